"""Gradients through time and recurrent Jacobians of a recurrent chain model.

The models are chains: Input -> recurrent layers (SimpleRNN / LSTM / GRU,
any `keras.layers.RNN`), optionally with normalization between them -> a
head (per time step if the last recurrent layer returns sequences). One
recurrent layer is studied: it is unrolled by hand, one cell step at a time,
so every hidden state h_t is a tensor the gradient can be taken against.

- `gradient_through_time` gives ||dL/dh_t|| and ||dL/dx_t|| for t = 1..T,
  the measurement behind claim C7 (the gradient reaching early steps decays
  or grows geometrically with the time gap).
- `recurrent_jacobian_spectrum` gives the spectral radius and singular
  values of each step's Jacobian d state_t / d state_{t-1}, the reason for
  that decay or growth.

    >>> g = gradient_through_time(model, x, y, task.loss)
    >>> g.input_ratio, g.decay_rate()
    >>> s = recurrent_jacobian_spectrum(model, x)
    >>> s.spectral_radius.mean(axis=0)  # per step, averaged over examples

Tested by tests/analysis/test_temporal.py.
"""

import dataclasses
import math
import weakref

import numpy as np

from analysis.gradients import l2_norm

# TensorFlow and Keras are imported inside the functions that need them, as in
# analysis.gradients: reading run directories must not pay for them.


@dataclasses.dataclass(frozen=True, eq=False)
class GradientThroughTime:
    """Gradient norms of one batch at every time step of one recurrent layer.

    Arrays are indexed by time step t = 1..T at index t - 1. Each norm is the
    Frobenius norm over batch x units (or batch x input features) of a total
    derivative of the batch-mean loss L, computed without float32 underflow
    or overflow (`analysis.gradients.l2_norm`).

    Attributes:
      layer: name of the recurrent layer studied.
      timesteps: T.
      loss: L, the mean loss on the batch.
      state_grad_norms: [T], ||dL/dh_t||, h_t the studied layer's hidden state
        (its output at step t), through every path: later steps and, if the
        layer returns sequences, the layers above at step t.
      cell_grad_norms: [T], ||dL/dc_t|| for an LSTM's carry c_t; None for a
        layer whose state is h alone (SimpleRNN, GRU).
      input_grad_norms: [T], ||dL/dx_t||, x the model input.
    """

    layer: str
    timesteps: int
    loss: float
    state_grad_norms: np.ndarray
    cell_grad_norms: np.ndarray | None
    input_grad_norms: np.ndarray

    @property
    def input_ratio(self) -> float:
        """||dL/dx_1|| / ||dL/dx_T||: below 1 vanishing, above 1 exploding."""
        return _ratio(self.input_grad_norms[0], self.input_grad_norms[-1])

    @property
    def state_ratio(self) -> float:
        """||dL/dh_1|| / ||dL/dh_T||: below 1 vanishing, above 1 exploding."""
        return _ratio(self.state_grad_norms[0], self.state_grad_norms[-1])

    def decay_rate(self, first: int = 1, last: int | None = None) -> float:
        """The per-step log growth of ||dL/dh_t|| going back in time.

        The least-squares slope of log ||dL/dh_t|| against the time gap T - t,
        over steps t = first..last (default all): each step back multiplies
        the gradient norm by about exp(rate). Negative is vanishing, positive
        exploding, 0 neither.

        For a linear RNN h_t = W h_{t-1} + U x_t whose loss reads h_T only,
        dL/dh_t = (W^T)^(T-t) dL/dh_T, so the rate is log(a) exactly for
        W = a I and tends to log(spectral radius of W) over long gaps for any
        W (the dominant eigenvalue takes over). For a nonlinear RNN it is the
        average log growth of the product of the step Jacobians J_t (see
        `recurrent_jacobian_spectrum`), a finite-time Lyapunov exponent, not
        the radius of any one J_t. Losses at every step (a per-step head) add
        fresh gradient at each t, which flattens the curve.

        Returns:
          The rate; nan with fewer than two positive, finite norms in range.
        """
        last = self.timesteps if last is None else last
        if not 1 <= first <= last <= self.timesteps:
            raise ValueError(
                f"decay_rate needs 1 <= first <= last <= {self.timesteps}. "
                f"Received: first={first}, last={last}"
            )
        t = np.arange(first, last + 1)
        norms = np.asarray(self.state_grad_norms[first - 1 : last], np.float64)
        keep = np.isfinite(norms) & (norms > 0)
        if keep.sum() < 2:
            return math.nan
        slope = np.polyfit(t[keep], np.log(norms[keep]), 1)[0]
        return float(-slope)  # per step of t; going back in time flips the sign


@dataclasses.dataclass(frozen=True, eq=False)
class RecurrentSpectrum:
    """Eigen- and singular values of the step Jacobians along a trajectory.

    J_t = d s_t / d s_{t-1} for t = 1..T (index t - 1), s the cell state:
    h (n values) for SimpleRNN and GRU, [h, c] concatenated (2n values) for
    an LSTM. s_0 is the layer's zero initial state; the input x_t is held
    fixed. Backpropagation multiplies dL/ds_t by J_t^T once per step back,
    so radii and singular values below 1 shrink the gradient, above 1 grow it.

    Attributes:
      layer: name of the recurrent layer studied.
      spectral_radius: [batch, T], max |eigenvalue| of J_t per example.
      singular_values: [batch, T, state size], descending.
    """

    layer: str
    spectral_radius: np.ndarray
    singular_values: np.ndarray

    @property
    def timesteps(self) -> int:
        """T."""
        return self.spectral_radius.shape[1]


def gradient_through_time(
    model, x, y, loss_fn, *, layer: str | None = None, trace: bool = True
) -> GradientThroughTime:
    """||dL/dh_t||, ||dL/dx_t|| (and ||dL/dc_t|| for an LSTM) for t = 1..T.

    The model is run in inference mode (dropout off, BatchNorm on its moving
    statistics). The studied layer is unrolled by hand, cell step by
    cell step; the rest of the chain runs layer by layer, and the result is
    the model's own output (`unrolled_outputs`).

    Args:
      model: a built Keras chain model (see the module docstring).
      x: inputs, [batch, T, features].
      y: targets, batch first.
      loss_fn: `loss_fn(y, outputs)`, per-example losses or a scalar; L is
        their mean.
      layer: name of the recurrent layer to study; default the first one.
      trace: run the unroll as `tf.function`s traced once per model, layer
        and input shape, for repeated calls (a trainer's logging steps). On
        2 CPU cores, LSTM(128), T = 100, batch 64: the first call traces for
        ~6 s, later calls take ~0.05 s. False runs eagerly, ~0.5 s per call,
        better for one call (tracing time grows with T).

    Returns:
      A GradientThroughTime.

    Raises:
      ValueError: the model has no (such) recurrent layer, is not a chain, or
        x is not [batch, T, features] with the batch size of y.
    """
    import tensorflow as tf

    chain = _chain(model, layer)
    x = _check_inputs(model, x)
    y = tf.convert_to_tensor(y)
    if y.shape.rank == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"x and y must have the same batch size. Received: x.shape={x.shape}, "
            f"y.shape={y.shape}"
        )
    fns = _functions(model, chain, trace)
    outputs = fns.forward(x)
    # The loss stays outside the compiled unroll, so any Python loss_fn works
    # without retracing; its gradient seeds the backward pass (a VJP).
    with tf.GradientTape() as tape:
        tape.watch(outputs)
        loss = tf.reduce_mean(loss_fn(y, outputs))
    seed = tape.gradient(loss, outputs)
    state_norms, cell_norms, input_norms = fns.backward(x, seed)
    return GradientThroughTime(
        layer=chain.name,
        timesteps=int(x.shape[1]),
        loss=float(loss),
        state_grad_norms=state_norms.numpy(),
        cell_grad_norms=cell_norms.numpy() if chain.has_carry else None,
        input_grad_norms=input_norms.numpy(),
    )


def unrolled_outputs(model, x, *, layer: str | None = None):
    """The model's output computed with `layer` unrolled by hand.

    Equals `model(x, training=False)` to float32 round-off: the check that
    the hand unroll is the model (tests/analysis/test_temporal.py).
    """
    chain = _chain(model, layer)
    return _functions(model, chain, trace=True).forward(_check_inputs(model, x))


def recurrent_jacobian_spectrum(
    model, x, *, layer: str | None = None, max_examples: int = 8
) -> RecurrentSpectrum:
    """Spectral radius and singular values of J_t = d s_t / d s_{t-1}.

    Along the trajectory of each of the first `max_examples` examples of x,
    each step's Jacobian (see RecurrentSpectrum; 2n x 2n for an LSTM) is
    formed with `batch_jacobian` and reduced at once with NumPy, so only one
    step's Jacobians are held. Cost per step: m backward passes through one
    cell (vectorized) plus an m x m eigen- and singular-value decomposition
    per example, m the state size, so O(examples * T * m^3) in all. On 2 CPU
    cores an LSTM(128) (m = 256) takes ~0.2 s per step for 8 examples, ~20 s
    at T = 100, nearly all of it in the eigenvalues: an analysis to run once,
    not at every logging step.

    Args:
      model: a built Keras chain model (see the module docstring).
      x: inputs, [batch, T, features].
      layer: name of the recurrent layer; default the first one.
      max_examples: how many examples of x to analyse (at least 1).

    Returns:
      A RecurrentSpectrum over min(batch, max_examples) examples.
    """
    import threadpoolctl

    if max_examples < 1:
        raise ValueError(f"max_examples must be >= 1. Received: {max_examples}")
    chain = _chain(model, layer)
    x = _check_inputs(model, x)[:max_examples]
    fns = _functions(model, chain, trace=True)
    sequence = fns.below(x)
    state = _flat_state(chain, chain.layer.cell.get_initial_state(x.shape[0]))
    radii, singular = [], []
    # OpenBLAS' threads fight TensorFlow's for the cores: one thread ran these
    # decompositions 5-25x faster on 2 cores. (threadpoolctl comes with
    # scikit-learn.)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        for t in range(x.shape[1]):
            state, jacobian = fns.step_jacobian(sequence[:, t], state)
            jacobian = jacobian.numpy().astype(np.float64)
            radii.append(np.abs(np.linalg.eigvals(jacobian)).max(axis=-1))
            singular.append(np.linalg.svd(jacobian, compute_uv=False))
    return RecurrentSpectrum(
        layer=chain.name,
        spectral_radius=np.stack(radii, axis=1),
        singular_values=np.stack(singular, axis=1),
    )


# The chain, its hand unroll and the traced functions behind the API.


@dataclasses.dataclass(frozen=True)
class _Chain:
    """A model's layers in order and which of them is studied."""

    layers: tuple
    index: int

    @property
    def layer(self):
        return self.layers[self.index]

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def has_carry(self) -> bool:
        """Whether the state is [h, c] (an LSTM) rather than h alone."""
        return len(_state_sizes(self.layer.cell)) == 2


def _state_sizes(cell) -> list:
    sizes = cell.state_size
    return list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]


def _chain(model, layer_name):
    """Validates the model as a chain and finds the studied recurrent layer."""
    import keras

    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(f"Model '{model.name}' is not built; build it on an input.")
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"Model '{model.name}' must have one input and one output.")
    layers = [
        lyr for lyr in model.layers if not isinstance(lyr, keras.layers.InputLayer)
    ]
    previous = inputs[0]
    for lyr in layers:
        # Keras keeps a layer's first call as its input and output, so a layer
        # called in another model first is refused here too.
        try:
            chained = lyr.input is previous
        except AttributeError:  # never called
            chained = False
        if not chained:
            raise ValueError(
                f"Model '{model.name}' is not a chain: layer '{lyr.name}' does not "
                "take the previous layer's output as its only input."
            )
        previous = lyr.output
    if previous is not model.outputs[0]:
        raise ValueError(f"Model '{model.name}' is not a chain ending in its output.")

    recurrent = [i for i, lyr in enumerate(layers) if isinstance(lyr, keras.layers.RNN)]
    if not recurrent:
        raise ValueError(
            f"Model '{model.name}' has no recurrent (keras.layers.RNN) layer."
        )
    names = [layers[i].name for i in recurrent]
    if layer_name is None:
        index = recurrent[0]
    elif layer_name in names:
        index = recurrent[names.index(layer_name)]
    else:
        raise ValueError(
            f"'{layer_name}' is not a recurrent layer of model '{model.name}'; "
            f"its recurrent layers are: {', '.join(names)}."
        )
    rnn = layers[index]
    if rnn.go_backwards or rnn.stateful or rnn.return_state:
        raise ValueError(
            f"Layer '{rnn.name}': go_backwards, stateful and return_state are not "
            "supported."
        )
    if len(_state_sizes(rnn.cell)) > 2 or not all(
        isinstance(s, int) for s in _state_sizes(rnn.cell)
    ):
        raise ValueError(
            f"Layer '{rnn.name}': the cell state must be h or [h, c]; "
            f"got state_size={rnn.cell.state_size}."
        )
    return _Chain(tuple(layers), index)


def _check_inputs(model, x):
    import tensorflow as tf

    x = tf.convert_to_tensor(x, dtype=model.inputs[0].dtype)
    if x.shape.rank != 3:
        raise ValueError(f"x must be [batch, T, features]. Received: x.shape={x.shape}")
    expected = tuple(model.inputs[0].shape[1:])
    if any(e is not None and e != g for e, g in zip(expected, x.shape[1:])):
        raise ValueError(
            f"x does not fit model '{model.name}' input (None, {expected}). "
            f"Received: x.shape={x.shape}"
        )
    return x


def _flat_state(chain, states):
    """The state as one [batch, m] tensor: h, or [h, c] concatenated."""
    import tensorflow as tf

    return tf.concat(list(states), axis=-1) if chain.has_carry else states[0]


def _cell_step(chain, x_t, state):
    """One cell step on a state given as a list; returns (h_t, new state list)."""
    output, new = chain.layer.cell(x_t, state, training=False)
    new = list(new) if isinstance(new, (list, tuple)) else [new]
    if output is not new[0]:
        # dL/dh_t is taken at the state tensor; it must also be the output.
        raise ValueError(f"Layer '{chain.name}': the cell's output is not its state h.")
    return output, new


def _below(chain, x):
    """The studied layer's input sequence: the layers below it, run whole."""
    for lyr in chain.layers[: chain.index]:
        x = lyr(x, training=False)
    return x


def _unroll(chain, x):
    """The chain's output with the studied layer unrolled, and its states.

    Returns:
      (outputs, [h_1 .. h_T], [c_1 .. c_T] or []).
    """
    import tensorflow as tf

    rnn = chain.layer
    sequence = _below(chain, x)
    state = list(rnn.cell.get_initial_state(tf.shape(sequence)[0]))
    hs, cs = [], []
    for t in range(sequence.shape[1]):
        h, state = _cell_step(chain, sequence[:, t], state)
        hs.append(h)
        cs.extend(state[1:])
    out = tf.stack(hs, axis=1) if rnn.return_sequences else hs[-1]
    for lyr in chain.layers[chain.index + 1 :]:
        out = lyr(out, training=False)
    return out, hs, cs


def _step_norms(grads):
    """[T] underflow-safe norms of a list of T per-step gradients."""
    import tensorflow as tf

    return tf.stack([l2_norm(g) for g in grads])


@dataclasses.dataclass(frozen=True)
class _Functions:
    """The compiled pieces of one (model, layer); tf.function traces per shape."""

    forward: object
    backward: object
    below: object
    step_jacobian: object


def _make_functions(chain, trace: bool) -> _Functions:
    import tensorflow as tf

    def forward(x):
        return _unroll(chain, x)[0]

    def backward(x, seed):
        # A vector-Jacobian product seeded with dL/d outputs: gradients with
        # respect to each h_t, c_t and x are the total derivatives of L.
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs, hs, cs = _unroll(chain, x)
        dh, dc, dx = tape.gradient(outputs, [hs, cs, x], output_gradients=seed)
        input_norms = _step_norms(tf.unstack(dx, axis=1))
        cell_norms = _step_norms(dc) if cs else tf.zeros([0])
        return _step_norms(dh), cell_norms, input_norms

    def below(x):
        return _below(chain, x)

    def step_jacobian(x_t, state):
        sizes = _state_sizes(chain.layer.cell)
        with tf.GradientTape() as tape:
            tape.watch(state)
            _, new = _cell_step(chain, x_t, tf.split(state, sizes, axis=-1))
            new = _flat_state(chain, new)
        return new, tape.batch_jacobian(new, state)

    maybe_traced = _traced if trace else lambda fn: fn
    return _Functions(
        forward=maybe_traced(forward),
        backward=maybe_traced(backward),
        below=maybe_traced(below),
        # Always traced: eagerly, batch_jacobian builds a function per call.
        step_jacobian=_traced(step_jacobian),
    )


def _traced(fn):
    import tensorflow as tf

    fn = tf.function(fn)
    # Every model gets its own functions built from the same code, which
    # TensorFlow's retracing warning counts as one function retracing.
    fn._omit_frequent_tracing_warning = True
    return fn


# One set of traced functions per model and studied layer, dropped with the
# model; the trainer calls gradient_through_time at every logging step.
_TRACED = weakref.WeakKeyDictionary()


def _functions(model, chain, trace: bool) -> _Functions:
    if not trace:
        return _make_functions(chain, trace=False)
    per_model = _TRACED.setdefault(model, {})
    if chain.name not in per_model:
        per_model[chain.name] = _make_functions(chain, trace=True)
    return per_model[chain.name]


def _ratio(first, last) -> float:
    first, last = float(first), float(last)
    if math.isnan(first) or math.isnan(last):
        return math.nan  # a NaN gradient is not an exploding one
    if last > 0:
        return first / last
    return math.inf if first > 0 else math.nan
