"""The recurrent family: `vanilla_rnn`, `lstm` and `gru`, one body, one switch.

The three models share every layer but the recurrent cell: `num_layers`
recurrent layers `blockNN_rnn`, an optional LayerNorm after each, and a linear
`head_dense`. So "does the gated cell fix the gradient through time?" is a
comparison of models that differ only in the cell (the pairs `rnn_lstm` and
`rnn_gru`).

Why a vanilla RNN forgets: back-propagating through one step multiplies the
gradient by the recurrent kernel W_hh and diag(f'(a_t)), so over a gap of k
steps it is a product of k such factors. With tanh (|tanh'| <= 1) a recurrent kernel
of spectral radius below 1 makes it vanish geometrically, above 1 lets it
explode (Pascanu, Mikolov & Bengio 2013). `RecurrentInitializer` sets that
radius exactly at init so experiments can put it where they want it (it
lives in zoo/layers.py with gradzoo's other Keras objects: Keras is imported
where a model is built, so registering the builders needs no TensorFlow).

Hidden states for analysis come from `hidden_state_model`, which shares the
model's weights and leaves the model itself untouched.

Tested by tests/zoo/test_rnn.py
(`.venv/bin/python -m pytest -q tests/zoo/test_rnn.py`).
"""

import math
from typing import TYPE_CHECKING, Literal

from zoo import blocks
from zoo.registry import register_model

if TYPE_CHECKING:
    import keras

RECURRENT_INITIALIZERS = ("orthogonal", "identity", "normal")

# BatchNorm is refused: over a layer's output sequence it is not the recurrent
# BatchNorm of Cooijmans et al. 2017 (which needs a custom cell), and its
# statistics would mix time steps; LayerNorm (Ba et al. 2016) has neither issue.
RECURRENT_NORMS = ("none", "layer")
RecurrentInit = Literal[RECURRENT_INITIALIZERS]
# The vanilla cell also takes "linear" (h_t = W x_t + W_hh h_{t-1} + b), the
# case where ||dL/dh_t|| = a^(T-t) ||dL/dh_T|| exactly for W_hh = a I.
RNN_ACTIVATIONS = (*blocks.ACTIVATIONS, "linear")
RecurrentActivation = Literal[RNN_ACTIVATIONS]
RecurrentNorm = Literal[RECURRENT_NORMS]

# Two layers, so that a tiny model stacks (and has a depth axis to profile).
_TINY = {"units": 4, "num_layers": 2}
_INPUT_KINDS = ("sequence",)


def check_radius(spectral_radius) -> None:
    if not 0 < spectral_radius < math.inf:  # also refuses NaN
        raise ValueError(
            "spectral_radius must be positive and finite. "
            f"Received: spectral_radius={spectral_radius}"
        )


def check_choice(kind: str, value, known: tuple[str, ...]) -> None:
    if value not in known:
        raise ValueError(
            f"Unknown {kind} '{value}'. Known: {', '.join(known)}. "
            f"Received: {kind}={value!r}"
        )


def _rnn(
    *,
    input_shape,
    num_outputs,
    output_per_step,
    cell,
    units,
    num_layers,
    initializer,
    init_std,
    recurrent_initializer,
    spectral_radius,
    norm,
    l1,
    l2,
    recurrent_l1,
    recurrent_l2,
    name,
    **cell_args,
) -> "keras.Model":
    import keras

    from zoo import fused_rnn
    from zoo.layers import RecurrentInitializer

    input_shape = tuple(input_shape)
    if len(input_shape) != 2:
        raise ValueError(
            "A recurrent model takes input_shape (time_steps, features). "
            f"Received: input_shape={input_shape}"
        )
    if units < 1:
        raise ValueError(f"units must be >= 1. Received: units={units}")
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1. Received: num_layers={num_layers}")
    if num_outputs < 1:
        raise ValueError(
            f"num_outputs must be >= 1. Received: num_outputs={num_outputs}"
        )
    norm = norm or "none"
    check_choice("norm", norm, RECURRENT_NORMS)
    check_choice("recurrent_initializer", recurrent_initializer, RECURRENT_INITIALIZERS)
    check_radius(spectral_radius)
    if "activation" in cell_args:  # before Keras, so the message is ours
        check_choice("activation", cell_args["activation"], RNN_ACTIVATIONS)
    if not (0 <= recurrent_l1 < math.inf and 0 <= recurrent_l2 < math.inf):
        raise ValueError(
            "recurrent_l1 and recurrent_l2 must be >= 0 and finite. "
            f"Received: recurrent_l1={recurrent_l1}, recurrent_l2={recurrent_l2}"
        )
    penalty = blocks.regularizer(l1, l2)
    recurrent_penalty = blocks.regularizer(recurrent_l1, recurrent_l2)
    layer_class = {
        "simple": keras.layers.SimpleRNN,
        # Keras' LSTM and GRU with a faster whole-sequence path on CPU; the
        # same weights and results (zoo/fused_rnn.py).
        "lstm": fused_rnn.LSTM,
        "gru": fused_rnn.GRU,
    }[cell]

    inputs = keras.Input(shape=input_shape, name="inputs")
    x = inputs
    for i in range(num_layers):
        prefix = blocks.block_prefix(i, num_layers)
        # Fresh initializers per layer: a reused one would repeat its draw.
        x = layer_class(
            units,
            kernel_initializer=blocks.initializer(initializer, std=init_std),
            recurrent_initializer=RecurrentInitializer(
                recurrent_initializer, spectral_radius
            ),
            kernel_regularizer=penalty,
            recurrent_regularizer=recurrent_penalty,
            return_sequences=output_per_step or i < num_layers - 1,
            name=f"{prefix}_rnn",
            **cell_args,
        )(x)
        norm_layer = blocks.norm(norm, layer_name=f"{prefix}_norm")
        if norm_layer is not None:
            x = norm_layer(x)
    outputs = keras.layers.Dense(
        num_outputs,
        kernel_initializer=blocks.initializer(initializer, std=init_std),
        kernel_regularizer=penalty,
        name="head_dense",
    )(x)
    return keras.Model(inputs, outputs, name=name)


def rnn_depth_axis(model: "keras.Model") -> list[tuple[int, str]]:
    """Each stacked recurrent layer's input kernel, `blockNN_rnn/<cell>/kernel`.

    The input kernel W carries the gradient from one layer down to the next;
    the recurrent kernel W_hh carries it back through time within a layer
    (analysis/temporal.py measures that), so it is not on the depth axis.
    """
    num_layers = len(recurrent_layers(model))
    names = [f"{blocks.block_prefix(i, num_layers)}_rnn" for i in range(num_layers)]
    return [(i, model.get_layer(n).cell.kernel.path) for i, n in enumerate(names)]


@register_model(
    "vanilla_rnn", input_kinds=_INPUT_KINDS, tiny=_TINY, depth_axis=rnn_depth_axis
)
def vanilla_rnn(
    *,
    input_shape,
    num_outputs,
    output_per_step=False,
    units: blocks.Count = 128,
    num_layers: blocks.Count = 1,
    activation: RecurrentActivation = "tanh",
    initializer: blocks.Initializer = "glorot_uniform",
    init_std: blocks.PositiveFloat = 0.01,
    recurrent_initializer: RecurrentInit = "orthogonal",
    spectral_radius: blocks.PositiveFloat = 1.0,
    norm: RecurrentNorm = "none",
    l1: blocks.Penalty = 0.0,
    l2: blocks.Penalty = 0.0,
    recurrent_l1: blocks.Penalty = 0.0,
    recurrent_l2: blocks.Penalty = 0.0,
) -> "keras.Model":
    """A stacked SimpleRNN, h_t = act(W x_t + W_hh h_{t-1} + b), then a linear head.

    - `num_layers` SimpleRNN layers `blockNN_rnn` of `units` units with
      `activation` (tanh by default); each returns its whole sequence except
      the last, which returns only its final state unless `output_per_step`.
    - Input kernels from `initializer` (glorot_uniform, Keras' default;
      "small_normal" is N(0, init_std^2)); recurrent kernels W_hh from
      `RecurrentInitializer`: `spectral_radius` times an orthogonal matrix
      (Keras' default, which already helps vanilla RNNs: the papers that found
      them hopeless mostly used small Gaussian W_hh), the identity, or a normal
      sample scaled to that radius. Zero biases.
    - Optional `blockNN_norm`: LayerNorm on each layer's output sequence,
      between layers and before the head; not inside the recurrence, so it
      does not touch the per-step gradient factor.
    - L1/L2 on the input kernels and the head (`l1`, `l2`), separately on the
      recurrent kernels (`recurrent_l1`, `recurrent_l2`).
    - `head_dense`: `num_outputs` logits from the final state, or at every
      step when `output_per_step`.

    Each step back multiplies the gradient by W_hh and diag(act'), tanh' <= 1:
    with spectral radius below 1 it vanishes geometrically with the time gap,
    above 1 it can explode (Bengio, Simard & Frasconi 1994; Pascanu et al.
    2013). ReLU with W_hh = I (IRNN) passes it unchanged through active units
    (Le, Jaitly & Hinton 2015); W_hh = 1.2 I with ReLU makes it grow 1.2x a step.

    Args:
      input_shape: the task's (time_steps, features).
      num_outputs: logits (classes) or regression outputs.
      output_per_step: a prediction at every time step (set by the task).
      units: recurrent units per layer.
      num_layers: stacked recurrent layers.
      activation: vanilla_rnn only: the cell's activation ("linear" too).
      initializer: input and head kernel initializer.
      init_std: std of the small_normal initializer.
      recurrent_initializer: recurrent kernel at init: spectral_radius x
        (orthogonal | identity | N(0, 1/n) rescaled).
      spectral_radius: spectral radius of the recurrent kernel at init.
      norm: LayerNorm on each layer's output sequence (none, layer).
      l1: L1 penalty on the input and head kernels.
      l2: L2 penalty on the input and head kernels.
      recurrent_l1: L1 penalty on the recurrent kernels.
      recurrent_l2: L2 penalty on the recurrent kernels.
    """
    return _rnn(**locals(), cell="simple", name="vanilla_rnn")


# lstm and gru run on zoo/fused_rnn.py, whose whole-sequence buffers want
# TensorFlow's BFC allocator (BUILD.md, "Second step-speed pass").
_FUSED = dict(
    input_kinds=_INPUT_KINDS,
    tiny=_TINY,
    depth_axis=rnn_depth_axis,
    cpu_allocator="bfc",
)


@register_model("lstm", **_FUSED)
def lstm(
    *,
    input_shape,
    num_outputs,
    output_per_step=False,
    units: blocks.Count = 128,
    num_layers: blocks.Count = 1,
    initializer: blocks.Initializer = "glorot_uniform",
    init_std: blocks.PositiveFloat = 0.01,
    recurrent_initializer: RecurrentInit = "orthogonal",
    spectral_radius: blocks.PositiveFloat = 1.0,
    unit_forget_bias: bool = True,
    norm: RecurrentNorm = "none",
    l1: blocks.Penalty = 0.0,
    l2: blocks.Penalty = 0.0,
    recurrent_l1: blocks.Penalty = 0.0,
    recurrent_l2: blocks.Penalty = 0.0,
) -> "keras.Model":
    """`vanilla_rnn` with LSTM cells (tanh, sigmoid gates i, f, c, o).

    - `num_layers` LSTM layers `blockNN_rnn`, optional LayerNorm, head, names,
      sequences and penalties exactly as in `vanilla_rnn`.
    - Input kernels from `initializer`; each of the four [units, units] gate
      blocks of the recurrent kernel from `RecurrentInitializer` (so every
      gate's W_hh has spectral radius `spectral_radius`; Keras' default instead
      makes the whole [units, 4 units] kernel row-orthonormal).
    - `unit_forget_bias=True` (Keras' default, Jozefowicz et al. 2015; not in
      Hochreiter & Schmidhuber 1997, whose LSTM had no forget gate) starts the
      forget-gate bias at 1, the other biases at 0.

    The cell state is updated additively, c_t = f_t * c_{t-1} + i_t * g_t,
    so the gradient along it is multiplied per step by the forget gate alone,
    with no W_hh and no squashing derivative; with f near 1 it crosses long gaps
    (Hochreiter & Schmidhuber 1997, "Long Short-Term Memory"; the forget gate
    is Gers, Schmidhuber & Cummins 2000).

    Args:
      unit_forget_bias: lstm: forget-gate bias 1 at init. The rest as
        `vanilla_rnn`.
    """
    return _rnn(**locals(), cell="lstm", name="lstm")


@register_model("gru", **_FUSED)
def gru(
    *,
    input_shape,
    num_outputs,
    output_per_step=False,
    units: blocks.Count = 128,
    num_layers: blocks.Count = 1,
    initializer: blocks.Initializer = "glorot_uniform",
    init_std: blocks.PositiveFloat = 0.01,
    recurrent_initializer: RecurrentInit = "orthogonal",
    spectral_radius: blocks.PositiveFloat = 1.0,
    norm: RecurrentNorm = "none",
    l1: blocks.Penalty = 0.0,
    l2: blocks.Penalty = 0.0,
    recurrent_l1: blocks.Penalty = 0.0,
    recurrent_l2: blocks.Penalty = 0.0,
) -> "keras.Model":
    """`vanilla_rnn` with GRU cells (tanh candidate, sigmoid gates z, r).

    - `num_layers` GRU layers `blockNN_rnn`, optional LayerNorm, head, names,
      sequences and penalties exactly as in `vanilla_rnn`.
    - Input kernels from `initializer`; each of the three [units, units] gate
      blocks of the recurrent kernel from `RecurrentInitializer`.
    - Keras' default `reset_after=True` (the cuDNN form: the reset gate
      applies after the recurrent matmul, with a second bias vector) differs
      from Cho et al. 2014, which resets h_{t-1} before it.

    The update gate interpolates, h_t = z_t * h_{t-1} + (1 - z_t) * h~_t
    (Keras' convention), so where z is near 1 a step passes the state and its
    gradient through almost unchanged, a leaky path like the LSTM's cell
    (Cho et al. 2014, "Learning Phrase Representations using RNN
    Encoder-Decoder for Statistical Machine Translation").

    Args: as `vanilla_rnn`.
    """
    return _rnn(**locals(), cell="gru", name="gru")


def recurrent_layers(model: "keras.Model") -> list["keras.layers.Layer"]:
    """The model's recurrent layers (`blockNN_rnn`) in depth order."""
    import keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def hidden_state_model(
    model: "keras.Model", layer: str = "block00_rnn"
) -> "keras.Model":
    """A probe from the model's inputs to `layer`'s hidden states at every step.

    Returns a `keras.Model` with output [batch, time_steps, units]: h_t of the
    recurrent layer `layer` (before its optional LayerNorm; an LSTM's h, not
    its cell state c). It re-runs the layer's own, already built cell over the
    layer's input with `return_sequences=True`, so the probe shares the
    model's variables (training the model moves the probe) and the model
    itself is left unchanged. Its last step equals the layer's final output.

    Gradients with respect to these states (e.g. ||dL/dh_t|| against t) need
    the states inside the loss computation; the probe is for the states'
    values and their statistics.
    """
    import keras

    rnn = model.get_layer(layer)
    if not isinstance(rnn, keras.layers.RNN):
        raise ValueError(
            "hidden_state_model needs a recurrent layer "
            f"({', '.join(r.name for r in recurrent_layers(model))}). "
            f"Received: layer={layer!r}"
        )
    states = keras.layers.RNN(
        rnn.cell, return_sequences=True, name=f"{rnn.name}_states"
    )(rnn.input)
    return keras.Model(model.input, states, name=f"{model.name}_{rnn.name}_states")
