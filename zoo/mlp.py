"""The deep MLP pair: `plain_mlp` and `residual_mlp`, one body, one switch.

Both arms have exactly the same layers and parameters; the residual arm only
adds identity skips around blocks 1..depth-1 (block 0 changes the width, so it
has none). That makes "does the skip connection fix the gradient?" a
comparison of two models that differ in nothing else.

Keras is imported where a model is built, so registering the builders (and
reading their signatures for flags) needs no TensorFlow.

Tested by tests/zoo/test_models.py.
"""

from typing import TYPE_CHECKING

from zoo import blocks
from zoo.registry import register_model

if TYPE_CHECKING:
    import keras

_TINY = {"depth": 3, "width": 8}
_INPUT_KINDS = ("vector", "image")


def _mlp(
    *,
    input_shape,
    num_outputs,
    depth,
    width,
    activation,
    initializer,
    init_std,
    norm,
    l1,
    l2,
    branch_scale,
    residual,
    name,
) -> "keras.Model":
    import keras

    from zoo.layers import Scalar

    if depth < 1:
        raise ValueError(f"depth must be >= 1. Received: depth={depth}")
    if width < 1:
        raise ValueError(f"width must be >= 1. Received: width={width}")
    if num_outputs < 1:
        raise ValueError(
            f"num_outputs must be >= 1. Received: num_outputs={num_outputs}"
        )
    norm = norm or "none"
    blocks.check_branch_scale(branch_scale, residual=residual, norm=norm, model=name)
    fixup = branch_scale == "fixup"
    penalty = blocks.regularizer(l1, l2)

    def dense(units, layer_name, zero=False):
        # A fresh initializer per layer: one reused unseeded Keras initializer
        # would give every layer the same weights.
        init = "zeros" if zero else blocks.initializer(initializer, std=init_std)
        return keras.layers.Dense(
            units,
            kernel_initializer=init,
            kernel_regularizer=penalty,
            name=layer_name,
        )

    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i in range(depth):
        prefix = blocks.block_prefix(i, depth)
        branch = residual and i > 0
        h = x
        if fixup and branch:
            h = Scalar("add", 0.0, name=f"{prefix}_bias_in")(h)
        h = dense(width, f"{prefix}_dense", zero=fixup and branch)(h)
        norm_layer = blocks.norm(norm, layer_name=f"{prefix}_norm")
        if norm_layer is not None:
            h = norm_layer(h)
        h = blocks.activation(activation, layer_name=f"{prefix}_act")(h)
        if branch and branch_scale == "rezero":
            h = Scalar("multiply", 0.0, name=f"{prefix}_rezero")(h)
        if branch and fixup:
            h = Scalar("multiply", 1.0, name=f"{prefix}_scale")(h)
            h = Scalar("add", 0.0, name=f"{prefix}_bias_out")(h)
        x = keras.layers.Add(name=f"{prefix}_add")([x, h]) if branch else h
    if fixup:
        x = Scalar("add", 0.0, name="head_bias")(x)
    outputs = dense(num_outputs, "head_dense", zero=fixup)(x)
    return keras.Model(inputs, outputs, name=name)


def mlp_depth_axis(model: "keras.Model") -> list[tuple[int, str]]:
    """The kernel of each hidden block, `blockNN_dense/kernel`, in block order.

    `_mlp` builds `depth` Dense layers `blockNN_dense` and one `head_dense`;
    the head maps to the outputs, so it is not on the depth axis.
    """
    import keras

    depth = sum(isinstance(layer, keras.layers.Dense) for layer in model.layers) - 1
    names = [f"{blocks.block_prefix(i, depth)}_dense" for i in range(depth)]
    return [(i, model.get_layer(n).kernel.path) for i, n in enumerate(names)]


@register_model(
    "plain_mlp",
    input_kinds=_INPUT_KINDS,
    tiny=_TINY,
    depth_axis=mlp_depth_axis,
    dense_stack=True,
)
def plain_mlp(
    *,
    input_shape,
    num_outputs,
    depth: blocks.Count = 20,
    width: blocks.Count = 64,
    activation: blocks.Activation = "sigmoid",
    initializer: blocks.Initializer = "glorot_uniform",
    init_std: blocks.PositiveFloat = 0.01,
    norm: blocks.Norm = "none",
    l1: blocks.Penalty = 0.0,
    l2: blocks.Penalty = 0.0,
    branch_scale: blocks.BranchScale = "none",
) -> "keras.Model":
    """A plain deep MLP: `depth` hidden layers, then a linear head.

    - Flatten, then `depth` blocks `blockNN_dense` (width units) ->
      optional `blockNN_norm` (BatchNorm or LayerNorm) -> `blockNN_act`.
    - Kernels from `initializer` (glorot_uniform by default; "small_normal"
      is N(0, init_std^2)), zero biases, optional L1/L2 kernel penalty.
    - `head_dense`: `num_outputs` logits, same initializer.

    With sigmoid or tanh the back-propagated gradient is multiplied by at most
    0.25 (or 1) per layer, so early layers' gradients shrink geometrically
    with depth (Glorot & Bengio 2010); ReLU with He init keeps them level
    (He et al. 2015).

    Args:
      input_shape: the task's input shape (flattened first).
      num_outputs: logits (classes) or regression outputs.
      depth: hidden layers.
      width: units per hidden layer.
      activation: hidden-layer activation.
      initializer: kernel initializer of every dense layer.
      init_std: std of the small_normal initializer.
      norm: normalization after each hidden dense layer (none, batch, layer).
      l1: L1 penalty on the kernels.
      l2: L2 penalty on the kernels.
      branch_scale: how each residual branch is scaled (residual models
        only): none (x + F(x)), rezero (x + a*F(x), a=0 at init) or fixup
        (zero-initialized last branch layer and head, scalar biases and
        multiplier; needs norm=none).
    """
    return _mlp(**locals(), residual=False, name="plain_mlp")


@register_model(
    "residual_mlp",
    input_kinds=_INPUT_KINDS,
    tiny=_TINY,
    depth_axis=mlp_depth_axis,
    dense_stack=True,
)
def residual_mlp(
    *,
    input_shape,
    num_outputs,
    depth: blocks.Count = 20,
    width: blocks.Count = 64,
    activation: blocks.Activation = "sigmoid",
    initializer: blocks.Initializer = "glorot_uniform",
    init_std: blocks.PositiveFloat = 0.01,
    norm: blocks.Norm = "none",
    l1: blocks.Penalty = 0.0,
    l2: blocks.Penalty = 0.0,
    branch_scale: blocks.BranchScale = "none",
) -> "keras.Model":
    """`plain_mlp` with identity skips: x <- x + act(norm(dense(x))).

    - Same layers and parameter count as `plain_mlp`; blocks 1..depth-1 add
      their input back (`blockNN_add`); block 0 maps the input to `width`.
    - Initializer, norm and penalty as in `plain_mlp`.
    - branch_scale="rezero": x <- x + a * F(x), one scalar `blockNN_rezero`
      per residual block, zero at init, so every block is the identity at
      init (Bachlechner et al. 2020).
    - branch_scale="fixup" (Zhang et al. 2019): x <- x + s * act(dense(x +
      b_in)) + b_out with scalars `blockNN_bias_in`, `blockNN_scale` (1 at
      init) and `blockNN_bias_out`; the branch's dense kernel and the head's
      kernel start at zero, and a scalar `head_bias` precedes the head. The
      branch has one weight layer (m=1), so Fixup's L^(-1/(2m-2)) rescaling
      of the other branch layers has nothing to act on. The branch is the
      identity at init when act(0) = 0 (relu, tanh, ...); with sigmoid it
      adds a constant 0.5 per block.

    The identity path gives every block a gradient at least as large as the
    one arriving from above, so early layers keep learning at any depth
    (He et al. 2016, "Deep Residual Learning for Image Recognition").

    Args: as `plain_mlp`.
    """
    return _mlp(**locals(), residual=True, name="residual_mlp")
