"""Per-layer gradient norms and the vanishing / exploding summary.

`layer_gradient_norms` measures a model on one batch; `gradient_profile`
orders the norms along the model's depth axis (`zoo.depth_axis(model)`, the
variables each model family declares, in depth order) and judges the
first/last ratio against stated thresholds. The trainer logs the same
per-variable norms in metrics.jsonl and the axis in config.json, so a
profile can be taken from a run directory too.

    >>> norms = layer_gradient_norms(model, x, y, task.loss)
    >>> print(gradient_profile(norms, zoo.depth_axis(model)))

Tested by tests/analysis/test_gradients.py.
"""

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence

# TensorFlow is imported inside the functions that need it, so reading run
# directories and profiling logged norms (analysis.compare) starts instantly.

# The verdict's thresholds on ||grad first depth position|| / ||grad last||.
VANISHING_BELOW = 1e-3
EXPLODING_ABOVE = 1e3

# How gradzoo-run-1 directories without a recorded depth axis are read: the
# hidden-layer kernels, "block07_dense/kernel" or a recurrent layer's input
# kernel "block01_rnn/lstm_cell/kernel"; the number is the depth.
_LEGACY_HIDDEN_KERNEL = r"^block(\d+)_\w+/(?:\w+_cell/)?kernel$"


def l2_norm(t):
    """The L2 norm of a tensor, safe from float32 underflow and overflow.

    tf.norm squares the entries first, so a vanishing gradient with entries
    near 1e-22 (a deep sigmoid net's first layer) reports exactly 0. Scaling
    by the largest entry first keeps every representable norm honest.
    """
    import tensorflow as tf

    scale = tf.reduce_max(tf.abs(t))
    safe = tf.where(scale > 0, scale, tf.ones_like(scale))
    return scale * tf.norm(t / safe)


def half_squares(tensors, wide: bool = True):
    """[sum(t^2) / 2 for t in tensors], one fused tf.nn.l2_loss op each.

    The shared first pass of `global_norm` and `l2_norms`: a step that needs
    both computes it once, and the global norm is then bitwise the same
    whether or not the per-tensor norms were asked for.

    `wide` (the default) squares and sums in float64, whose range holds the
    square of every float32 (or float16) number, the subnormals included:
    the sums neither under- nor overflow, so the norms taken from them need
    no rescue pass, and a sum is non-finite exactly when its tensor holds an
    inf or a NaN. Without `wide` (for a device without float64, such as a
    TPU) the sums are in the tensors' dtype and the norms check them.
    """
    import tensorflow as tf

    if wide:
        return tf.stack([tf.nn.l2_loss(tf.cast(t, tf.float64)) for t in tensors])
    return tf.stack([tf.nn.l2_loss(t) for t in tensors])


def global_norm(tensors, halves=None):
    """tf.linalg.global_norm, safe from float32 over- and underflow.

    Squared entries overflow float32 above ~1e19 and underflow below ~1e-19.
    A finite gradient of norm 1e20 must read as 1e20 (clipping can rescue it),
    not inf (a divergence), and one of norm 1e-24 as 1e-24, not 0. `halves`
    is `half_squares(tensors)` when already computed. From wide (float64)
    sums the norm is exact at every scale and costs no other op; from
    narrow ones a rescaled pass runs when the squares over- or underflowed.
    Returns a float32 scalar (inf if the norm exceeds float32's range).
    """
    import tensorflow as tf

    if halves is None:
        halves = half_squares(tensors)
    norm = tf.sqrt(tf.reduce_sum(halves) * 2.0)
    if halves.dtype == tf.float64:
        return tf.cast(norm, tf.float32)

    def rescaled():
        scale = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(t)) for t in tensors]))
        safe = tf.where(scale > 0, scale, tf.ones_like(scale))
        return scale * tf.linalg.global_norm([t / safe for t in tensors])

    plain_is_exact = tf.math.is_finite(norm) & (norm > 1e-15)
    return tf.cond(plain_is_exact, lambda: norm, rescaled)


def l2_norms(tensors, halves=None):
    """Every tensor's L2 norm, as one float32 vector, safe like `l2_norm`.

    From `half_squares` (pass `halves` if already computed). From wide sums
    that is all; from narrow ones the scaled `l2_norm` of each runs when
    some squared sum under- or overflowed (a tensor of zeros also takes that
    path; its norm 0 is then exact).
    """
    import tensorflow as tf

    if halves is None:
        halves = half_squares(tensors)
    plain = tf.sqrt(2.0 * halves)
    if halves.dtype == tf.float64:
        return tf.cast(plain, tf.float32)
    plain_is_exact = tf.reduce_all(tf.math.is_finite(plain) & (plain > 1e-15))
    return tf.cond(
        plain_is_exact, lambda: plain, lambda: tf.stack([l2_norm(t) for t in tensors])
    )


def layer_gradient_norms(
    model, x, y, loss_fn, *, training: bool = True, include_penalty: bool = True
) -> dict[str, float]:
    """The gradient norm of every trainable variable on one batch, no update.

    Args:
      model: a Keras model returning logits.
      x, y: one batch.
      loss_fn: `loss_fn(y, logits)`, per-example losses or a scalar; the
        gradient is that of its mean.
      training: call the model in training mode (batch statistics in
        BatchNorm), as the train step does. BatchNorm's moving averages are
        restored afterwards, so the model is left as it was.
      include_penalty: add the model's L1/L2 penalties, as the train step does.

    Returns:
      {variable path: L2 norm of its gradient}; 0.0 for a variable the loss
      does not depend on.
    """
    import tensorflow as tf

    saved = [tf.identity(v) for v in model.non_trainable_variables]
    with tf.GradientTape() as tape:
        logits = model(x, training=training)
        loss = tf.reduce_mean(loss_fn(y, logits))
        if include_penalty and model.losses:
            loss += tf.add_n(model.losses)
    grads = tape.gradient(loss, model.trainable_variables)
    for v, value in zip(model.non_trainable_variables, saved):
        v.assign(value)
    return {
        v.path: 0.0 if g is None else float(l2_norm(g))
        for v, g in zip(model.trainable_variables, grads)
    }


@dataclasses.dataclass(frozen=True)
class GradientProfile:
    """Gradient norms along the depth axis, one per position, and their verdict.

    `layers` labels each position: its variable path, or the paths joined by
    "+" where several variables share it. `norms` are the positions' norms.
    """

    layers: tuple[str, ...]
    norms: tuple[float, ...]
    first_last_ratio: float
    per_layer_factor: float  # geometric mean change per position, input-ward
    verdict: str  # "vanishing", "exploding", "healthy" or "undefined"

    def __str__(self) -> str:
        width = max(24, *(len(name) for name in self.layers))
        rows = [
            f"  {name:<{width}} {norm:.3e}"
            for name, norm in zip(self.layers, self.norms)
        ]
        return "\n".join(
            rows
            + [
                f"  first/last ratio {self.first_last_ratio:.3e} "
                f"(x{self.per_layer_factor:.3g} per layer): {self.verdict} "
                f"(vanishing below {VANISHING_BELOW:g}, exploding above "
                f"{EXPLODING_ABOVE:g})"
            ]
        )


def verdict(ratio: float) -> str:
    """Judges a first/last gradient-norm ratio against the stated thresholds."""
    if not math.isfinite(ratio) or ratio <= 0:
        return "undefined"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    if ratio > EXPLODING_ABOVE:
        return "exploding"
    return "healthy"


def legacy_depth_axis(paths: Iterable[str]) -> tuple[tuple[int, str], ...]:
    """The depth axis of a gradzoo-run-1 directory that recorded none.

    Only for reading run directories written by older gradzoo, whose
    config.json has no "depth_axis": it reconstructs the axis from the logged
    variable paths by the naming rule of that time, the `blockNN_` hidden
    kernels (`blockNN_dense/kernel`, `blockNN_rnn/<cell>/kernel`), NN being
    the position. Models and new runs declare their axis (`zoo.depth_axis`).
    """
    matched = []
    for path in paths:
        m = re.match(_LEGACY_HIDDEN_KERNEL, path)
        if m:
            matched.append((int(m.group(1)), path))
    return tuple(sorted(matched))


def gradient_profile(
    norms: Mapping[str, float], axis: Sequence[Sequence]
) -> GradientProfile:
    """Orders the gradient norms along a depth axis and summarizes them.

    Args:
      norms: {variable path: gradient norm}, as `layer_gradient_norms`
        returns and metrics.jsonl's `grad_norms` holds.
      axis: (position, variable path) pairs: `zoo.depth_axis(model)`, or a
        run's config.json "depth_axis" ([position, path] lists).

    Where several variables share a position (a block's convolutions and its
    projection shortcut), the position's norm is the L2 norm of theirs,
    sqrt(sum of squares): the norm of the block's gradient as one vector.
    The ratio is the lowest position's norm over the highest's, and the
    per-layer factor its geometric mean over the steps between consecutive
    positions.

    Raises:
      ValueError: a path of the axis has no norm, or the axis has fewer than
        two positions.
    """
    by_position: dict[int, list[str]] = {}
    for position, path in axis:
        if path not in norms:
            raise ValueError(
                f"The depth axis names {path!r}, which has no gradient norm."
            )
        by_position.setdefault(int(position), []).append(path)
    if len(by_position) < 2:
        raise ValueError(
            "A gradient profile needs two or more depth positions; "
            f"the axis has {len(by_position)}."
        )
    positions = sorted(by_position)
    layers = tuple("+".join(by_position[p]) for p in positions)
    # hypot of one value is that value exactly, so a one-variable position
    # keeps its norm bit for bit; of several it avoids over- and underflow.
    values = tuple(
        math.hypot(*(float(norms[path]) for path in by_position[p])) for p in positions
    )
    first, last = values[0], values[-1]
    ratio = first / last if last > 0 else math.inf if first > 0 else math.nan
    factor = (
        ratio ** (1 / (len(values) - 1))
        if math.isfinite(ratio) and ratio > 0
        else math.nan
    )
    return GradientProfile(layers, values, ratio, factor, verdict(ratio))
