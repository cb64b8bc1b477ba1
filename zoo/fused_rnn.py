"""Keras' LSTM and GRU layers with a faster whole-sequence path on CPU.

`LSTM` and `GRU` are `keras.layers.LSTM` and `keras.layers.GRU`, the same
cells, weights, variable paths and results; only how the sequence is run on
a CPU changes. Keras runs a CPU sequence as a `tf.while_loop` over the cell,
and TensorFlow differentiates that loop op by op. Here, as in cuDNN and
PyTorch:

- the input projection x_t W + b of every step is one [batch * time, d] x
  [d, k * units] matmul before the loop, so the loop holds only the
  recurrent matmul and the gate arithmetic;
- the backward pass is written out (`tf.custom_gradient`): one loop back
  through time computes the gates' gradients, and the weight gradients are
  then two large matmuls over all steps at once, instead of a small matmul
  and an accumulation per step;
- both loops through time are compiled with XLA (see below for why);
- the batch is cut into one slice per core (`parts_for`), each run through
  time by its own loop, concurrently: a loop is a chain of small steps that
  keeps one core busy, and the rows of a batch never interact.

BUILD.md ("LSTM and GRU: the fused CPU path", and "LSTM and GRU: one loop
per core" for the slices) has the measurements, and the variants that lost.

Where the fast path is not taken (Keras' own path runs instead):

- a GPU is visible: Keras runs cuDNN's fused kernels there, the design
  this path copies on CPU, so it is left in charge (not timed here: no GPU);
- a mask, dropout, recurrent dropout, `go_backwards`, `unroll`, or
  activations other than tanh / sigmoid; a GRU with `reset_after=False`.

The cell is untouched, so code that steps the cell by hand
(analysis/temporal.py, `zoo.rnn.hidden_state_model`) sees the same h_t.
Weights saved from these layers load into plain Keras layers and back.

Tested by tests/zoo/test_fused_rnn.py (outputs and gradients equal Keras'
layers to 1e-5).
"""

import os

import keras
import tensorflow as tf

# A slice of the batch is worth its own loop from this many rows on
# (measured on 2 cores at batch 32, 64 and 128: BUILD.md).
MIN_ROWS_PER_PART = 16


def _is_default_gating(layer) -> bool:
    cell = layer.cell
    return (
        cell.activation is keras.activations.tanh
        and cell.recurrent_activation is keras.activations.sigmoid
        and cell.use_bias
        and not cell.dropout
        and not cell.recurrent_dropout
        and not layer.go_backwards
        and not layer.unroll
    )


def _fast_path(layer, mask) -> bool:
    """Whether the layer runs its sequence on the fused CPU path."""
    return (
        mask is None
        and _is_default_gating(layer)
        # With a GPU, Keras' own inner_loop takes cuDNN: keep it.
        and not tf.config.list_logical_devices("GPU")
    )


def _cores() -> int:
    """The loops TensorFlow can run at once: its inter-op threads."""
    threads = tf.config.threading.get_inter_op_parallelism_threads()
    env = os.environ.get("TF_NUM_INTEROP_THREADS", "")
    threads = threads or (int(env) if env.isdigit() else 0)
    if threads:
        return threads
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parts_for(batch: int | None) -> int:
    """How many slices of a batch run through time concurrently.

    One per core TensorFlow runs ops on, with at least `MIN_ROWS_PER_PART`
    rows each; 1 for a batch whose size is unknown when the step is traced.
    """
    if batch is None:
        return 1
    return max(1, min(_cores(), batch // MIN_ROWS_PER_PART))


def _slices(parts, *tensors):
    """The tensors cut along axis 0 (the batch): `parts` tuples of slices."""
    if parts == 1:
        return [tensors]
    batch = tensors[0].shape[0]
    if batch is None or not 1 <= parts <= batch:
        raise ValueError(f"cannot cut a batch of {batch} into {parts} slices")
    sizes = [batch // parts + (i < batch % parts) for i in range(parts)]
    return list(zip(*(tf.split(t, sizes) for t in tensors)))


def _zeros_if_none(grad, like):
    return tf.zeros_like(like) if grad is None else grad


def _state_shape(xt, u):
    """The static [time, batch, units] of h, which the XLA call does not keep."""
    return xt.shape[:2].concatenate(u.shape[:1])


def _array(like, steps):
    return tf.TensorArray(like.dtype, size=steps)


# The two loops through time are compiled with XLA: a loop iteration is then a
# matmul and one or two fused element-wise kernels, where the TensorFlow
# executor would schedule some 20 small ops, each costing more than its
# arithmetic at these sizes. The big matmuls before and after stay in
# TensorFlow (oneDNN). Both are called on tensors the outer tape does not
# watch: the gradient is the custom one below, never XLA's.


@tf.function(jit_compile=True)
def _lstm_forward(zx, h0, c0, u):
    """h, c and the gates (i, f, g, o, activated) at every step."""
    steps = tf.shape(zx)[0]

    def step(t, h, c, hs, cs, gates):
        i, f, g, o = tf.split(zx[t] + h @ u, 4, axis=1)
        i, f, g, o = tf.sigmoid(i), tf.sigmoid(f), tf.tanh(g), tf.sigmoid(o)
        c = f * c + i * g
        h = o * tf.tanh(c)
        gates = gates.write(t, tf.concat([i, f, g, o], 1))
        return t + 1, h, c, hs.write(t, h), cs.write(t, c), gates

    start = (0, h0, c0, _array(zx, steps), _array(zx, steps), _array(zx, steps))
    _, _, _, hs, cs, gates = tf.while_loop(lambda t, *_: t < steps, step, start)
    return hs.stack(), cs.stack(), gates.stack()


@tf.function(jit_compile=True)
def _lstm_backward(dhs, dc_last, gates, cs, c0, u):
    """dL/dh_0, dL/dc_0 and the gates' pre-activation gradients dz_t."""
    steps = tf.shape(dhs)[0]
    c_prev = tf.concat([c0[None], cs[:-1]], 0)

    def step(t, dh, dc, dzs):
        dh += dhs[t]
        i, f, g, o = tf.split(gates[t], 4, axis=1)
        tanh_c = tf.tanh(cs[t])
        dc += dh * o * (1 - tanh_c * tanh_c)
        dz = tf.concat(
            [
                dc * g * i * (1 - i),
                dc * c_prev[t] * f * (1 - f),
                dc * i * (1 - g * g),
                dh * tanh_c * o * (1 - o),
            ],
            1,
        )
        return t - 1, tf.matmul(dz, u, transpose_b=True), dc * f, dzs.write(t, dz)

    start = (steps - 1, tf.zeros_like(c0), dc_last, _array(dhs, steps))
    _, dh0, dc0, dzs = tf.while_loop(lambda t, *_: t >= 0, step, start)
    return dh0, dc0, dzs.stack()


def lstm_sequence(x, h0, c0, kernel, recurrent_kernel, bias, parts=1):
    """An LSTM over a batch-major sequence, Keras' gate order (i, f, c, o).

    Args:
      x: [batch, time, d] inputs.
      h0, c0: [batch, units] initial states.
      kernel: [d, 4 units]; recurrent_kernel: [units, 4 units]; bias: [4 units].
      parts: slices of the batch run concurrently (`parts_for`); more than 1
        needs the batch size in x's static shape.

    Returns:
      h: [time, batch, units] (time-major) and the last cell state c_T.
    """
    out = [
        _lstm(tf.transpose(x, [1, 0, 2]), h0, c0, kernel, recurrent_kernel, bias)
        for x, h0, c0 in _slices(parts, x, h0, c0)
    ]
    if parts == 1:
        return out[0]
    return tf.concat([h for h, _ in out], 1), tf.concat([c for _, c in out], 0)


@tf.custom_gradient
def _lstm(xt, h0, c0, w, u, b):
    steps, batch, d = tf.unstack(tf.shape(xt))
    n = tf.shape(u)[0]
    x2 = tf.reshape(xt, [steps * batch, d])
    zx = tf.reshape(x2 @ w + b, [steps, batch, 4 * n])
    free = tf.stop_gradient
    hs, cs, gates = _lstm_forward(free(zx), free(h0), free(c0), free(u))
    hs.set_shape(_state_shape(xt, u))

    def grad(dhs, dc_last):
        dh0, dc0, dz = _lstm_backward(
            free(_zeros_if_none(dhs, hs)),
            free(_zeros_if_none(dc_last, c0)),
            gates,
            cs,
            free(c0),
            free(u),
        )
        # The weight gradients over all steps at once: two large matmuls.
        dz = tf.reshape(dz, [steps * batch, 4 * n])
        h_prev = tf.reshape(tf.concat([h0[None], hs[:-1]], 0), [steps * batch, n])
        dx = tf.reshape(tf.matmul(dz, w, transpose_b=True), [steps, batch, d])
        dw = tf.matmul(x2, dz, transpose_a=True)
        du = tf.matmul(h_prev, dz, transpose_a=True)
        return dx, dh0, dc0, dw, du, tf.reduce_sum(dz, 0)

    return (hs, cs[-1]), grad


@tf.function(jit_compile=True)
def _gru_forward(zx, h0, u, recurrent_bias):
    """h at every step, and z, r, the candidate and h_{t-1} U_h + b'_h."""
    steps = tf.shape(zx)[0]

    def step(t, h, hs, saved):
        xz, xr, xh = tf.split(zx[t], 3, axis=1)
        az, ar, ah = tf.split(h @ u + recurrent_bias, 3, axis=1)
        z = tf.sigmoid(xz + az)
        r = tf.sigmoid(xr + ar)
        candidate = tf.tanh(xh + r * ah)
        h = z * h + (1 - z) * candidate
        saved = saved.write(t, tf.concat([z, r, candidate, ah], 1))
        return t + 1, h, hs.write(t, h), saved

    start = (0, h0, _array(zx, steps), _array(zx, steps))
    _, _, hs, saved = tf.while_loop(lambda t, *_: t < steps, step, start)
    return hs.stack(), saved.stack()


@tf.function(jit_compile=True)
def _gru_backward(dhs, saved, h_prev, u):
    """dL/dh_0 and the gradients of x W + b and of h_{t-1} U + b' at every step."""
    steps = tf.shape(dhs)[0]

    def step(t, dh, dxs, das):
        dh += dhs[t]
        z, r, candidate, ah = tf.split(saved[t], 4, axis=1)
        d_candidate = dh * (1 - z) * (1 - candidate * candidate)
        dz = dh * (h_prev[t] - candidate) * z * (1 - z)
        dr = d_candidate * ah * r * (1 - r)
        da = tf.concat([dz, dr, d_candidate * r], 1)
        dxs = dxs.write(t, tf.concat([dz, dr, d_candidate], 1))
        dh = dh * z + tf.matmul(da, u, transpose_b=True)
        return t - 1, dh, dxs, das.write(t, da)

    start = (
        steps - 1,
        tf.zeros_like(h_prev[0]),
        _array(dhs, steps),
        _array(dhs, steps),
    )
    _, dh0, dxs, das = tf.while_loop(lambda t, *_: t >= 0, step, start)
    return dh0, dxs.stack(), das.stack()


def gru_sequence(x, h0, kernel, recurrent_kernel, bias, parts=1):
    """A GRU (Keras' reset_after=True form) over a batch-major sequence.

    Gates in Keras' order (z, r, h); h_t = z h_{t-1} + (1 - z) tanh(x W_h +
    b_h + r (h_{t-1} U_h + b'_h)).

    Args:
      x: [batch, time, d] inputs.
      h0: [batch, units] initial state.
      kernel: [d, 3 units]; recurrent_kernel: [units, 3 units]; bias:
        [2, 3 units] (input bias, recurrent bias).
      parts: as for `lstm_sequence`.

    Returns:
      h: [time, batch, units] (time-major).
    """
    out = [
        _gru(tf.transpose(x, [1, 0, 2]), h0, kernel, recurrent_kernel, bias)
        for x, h0 in _slices(parts, x, h0)
    ]
    return out[0] if parts == 1 else tf.concat(out, 1)


@tf.custom_gradient
def _gru(xt, h0, w, u, b):
    steps, batch, d = tf.unstack(tf.shape(xt))
    n = tf.shape(u)[0]
    x2 = tf.reshape(xt, [steps * batch, d])
    zx = tf.reshape(x2 @ w + b[0], [steps, batch, 3 * n])
    free = tf.stop_gradient
    hs, saved = _gru_forward(free(zx), free(h0), free(u), free(b[1]))
    hs.set_shape(_state_shape(xt, u))

    def grad(dhs):
        h_prev = tf.concat([h0[None], hs[:-1]], 0)
        dh0, dzx, da = _gru_backward(free(dhs), saved, free(h_prev), free(u))
        dzx = tf.reshape(dzx, [steps * batch, 3 * n])
        da = tf.reshape(da, [steps * batch, 3 * n])
        dx = tf.reshape(tf.matmul(dzx, w, transpose_b=True), [steps, batch, d])
        dw = tf.matmul(x2, dzx, transpose_a=True)
        h_prev = tf.reshape(h_prev, [steps * batch, n])
        du = tf.matmul(h_prev, da, transpose_a=True)
        db = tf.stack([tf.reduce_sum(dzx, 0), tf.reduce_sum(da, 0)])
        return dx, dh0, dw, du, db

    return hs, grad


def _outputs(hs):
    """inner_loop's (last_output, outputs) from time-major h."""
    return hs[-1], tf.transpose(hs, [1, 0, 2])


@keras.saving.register_keras_serializable(package="gradzoo")
class LSTM(keras.layers.LSTM):
    """`keras.layers.LSTM` with the fused CPU path of this module."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not _fast_path(self, mask):
            return super().inner_loop(sequences, initial_state, mask, training)
        cell = self.cell
        hs, c_last = lstm_sequence(
            sequences,
            initial_state[0],
            initial_state[1],
            cell.kernel.value,
            cell.recurrent_kernel.value,
            cell.bias.value,
            parts=parts_for(sequences.shape[0]),
        )
        last, outputs = _outputs(hs)
        return last, outputs, [last, c_last]


@keras.saving.register_keras_serializable(package="gradzoo")
class GRU(keras.layers.GRU):
    """`keras.layers.GRU` with the fused CPU path of this module."""

    def inner_loop(self, sequences, initial_state, mask, training=False):
        if not (self.cell.reset_after and _fast_path(self, mask)):
            return super().inner_loop(sequences, initial_state, mask, training)
        cell = self.cell
        # RNN.call passes [h]; Keras' GRU.inner_loop also takes a bare h.
        nested = isinstance(initial_state, list | tuple)
        h0 = initial_state[0] if nested else initial_state
        hs = gru_sequence(
            sequences,
            h0,
            cell.kernel.value,
            cell.recurrent_kernel.value,
            cell.bias.value,
            parts=parts_for(sequences.shape[0]),
        )
        last, outputs = _outputs(hs)
        return last, outputs, [last]
