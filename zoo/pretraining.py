"""Greedy layer-wise pretraining: one hidden layer at a time, as an autoencoder.

Before ReLU, normalization and skip connections, deep sigmoid nets were
trained by first training each hidden layer alone to reconstruct its input
(the codes of the layers below, which stay fixed), then fine-tuning the whole
stack on the supervised task (Hinton et al. 2006; Bengio et al. 2007, "Greedy
Layer-Wise Training of Deep Networks"). This module holds the model-side
pieces, usable on any model with a dense hidden stack (every registered MLP):

- `hidden_stack(model)`: the hidden layers, in order (`blockNN_dense` up to
  the block's activation `blockNN_act`, norm included);
- `schedule(model, layers)`: the greedy order, and for each stage the
  variables trained and the variables frozen;
- `layer_autoencoder(model, index, ...)`: a Keras model around hidden layer
  `index`: the layers below (frozen) compute the code the layer reads; the
  encoder is the layer itself with its activation; a linear decoder maps the
  layer's output back to its input, with its own or the encoder's
  transposed kernel (tied weights), optionally after masking noise (the
  denoising autoencoder of Vincent et al. 2008).

    >>> import zoo
    >>> from zoo import pretraining
    >>> net = zoo.get_model("plain_mlp", input_shape=(64,), num_outputs=10)
    >>> for stage in pretraining.schedule(net):
    ...     ae = pretraining.layer_autoencoder(net, stage.index, denoising=0.25)
    ...     # train `ae` on the task's inputs with `reconstruction_error`

The layers are shared with `model`: training an autoencoder changes the
network's layer in place. Building one freezes the layers below it
(`trainable = False`); `unfreeze(model)` undoes that for fine-tuning.

The autoencoder's own layers (`MaskingNoise`, `TiedDense`, `StackPair`) are in
zoo/layers.py; Keras is imported where an autoencoder is built, so `import
zoo` needs no TensorFlow.

Tested by tests/zoo/test_pretraining.py.
"""

import dataclasses
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

_DENSE = re.compile(r"^(block\d+)_dense$")


@dataclasses.dataclass(frozen=True)
class HiddenLayer:
    """One hidden layer of a dense stack: its Dense layer and its output layer."""

    index: int  # position in the stack, 0 next to the input
    prefix: str  # "block03"
    dense: str  # the Dense layer's name, "block03_dense"
    output: str  # the block's last layer before any skip: "block03_act"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One step of the greedy schedule: the layer trained, and what is frozen."""

    index: int
    layer: HiddenLayer
    trained: tuple[str, ...]  # the network's variable paths trained at this stage
    frozen: tuple[str, ...]  # the network's variable paths held fixed below it


def no_dense_stack(name: str) -> str:
    """The refusal of model `name` for pretraining (here and in configs)."""
    return (
        f"Model '{name}' has no dense hidden stack to pretrain "
        "(no Dense layer named blockNN_dense)."
    )


def hidden_stack(model: "keras.Model") -> list[HiddenLayer]:
    """The hidden layers of `model`'s dense stack, input side first.

    A hidden layer is a Dense layer named `blockNN_dense` (the zoo's naming,
    zoo/blocks.py `block_prefix`); its output is the block's `blockNN_act`
    layer when there is one, else the Dense layer itself.

    Raises:
      ValueError: the model has no such layer (e.g. a recurrent model).
    """
    import keras

    names = {layer.name for layer in model.layers}
    stack = []
    for layer in model.layers:
        match = _DENSE.match(layer.name)
        if match and isinstance(layer, keras.layers.Dense):
            prefix = match.group(1)
            output = f"{prefix}_act" if f"{prefix}_act" in names else layer.name
            stack.append((prefix, layer.name, output))
    if not stack:
        raise ValueError(no_dense_stack(model.name))
    stack.sort()
    return [HiddenLayer(i, *entry) for i, entry in enumerate(stack)]


def check_layers(model: "keras.Model", layers) -> list[int]:
    """The layer indices to pretrain (None: all), checked against the stack.

    Raises:
      ValueError: an index out of range, repeated, or out of order.
    """
    count = len(hidden_stack(model))
    if layers is None:
        return list(range(count))
    layers = list(layers)
    for i in layers:
        if not (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < count):
            raise ValueError(
                f"pretrain layer {i!r} is out of range: model '{model.name}' has "
                f"hidden layers 0-{count - 1}. Received: layers={layers}"
            )
    if not layers or layers != sorted(set(layers)):
        raise ValueError(
            "pretrain layers must be distinct and in increasing order (the "
            f"greedy schedule goes up the stack). Received: layers={layers}"
        )
    return layers


def schedule(model: "keras.Model", layers=None) -> list[Stage]:
    """The greedy schedule over `layers` (default: every hidden layer).

    Stage k trains hidden layer k (its Dense layer and, if present, its
    norm) with every layer below it frozen; the layers above and the head
    are not used until fine-tuning.
    """
    stack = hidden_stack(model)
    stages = []
    for i in check_layers(model, layers):
        below = [v.path for h in stack[:i] for v in _block_variables(model, h)]
        trained = [v.path for v in _block_variables(model, stack[i])]
        stages.append(Stage(i, stack[i], tuple(trained), tuple(below)))
    return stages


def _block_variables(model, hidden: HiddenLayer) -> list:
    """The variables of one hidden block (dense, norm): layers named prefix_*."""
    return [
        v
        for layer in model.layers
        if layer.name.startswith(hidden.prefix + "_")
        for v in layer.weights
    ]


def unfreeze(model: "keras.Model") -> None:
    """Makes every layer of `model` trainable again (before fine-tuning)."""
    model.trainable = True
    for layer in model.layers:
        layer.trainable = True


def reconstruction_error(y_true, outputs):
    """Per-example mean squared error of an autoencoder's stacked output.

    `outputs` is what `layer_autoencoder` returns, [batch, 2, units]; the
    labels `y_true` are not used (the target is the code itself).
    """
    import tensorflow as tf

    del y_true
    outputs = tf.cast(outputs, tf.float32)
    return tf.reduce_mean(tf.square(outputs[:, 0] - outputs[:, 1]), axis=-1)


def layer_autoencoder(
    model: "keras.Model",
    index: int,
    *,
    tied_weights: bool = False,
    denoising: float = 0.0,
    seed: int = 0,
) -> "keras.Model":
    """An autoencoder around hidden layer `index` of `model`, sharing its layers.

    - Input: the network's input. The layers below `index` (frozen: their
      `trainable` is set to False) compute the code c the layer reads.
    - Optional masking noise on c (`denoising`: the fraction of entries
      zeroed while training; 0 is none).
    - Encoder: hidden layer `index` itself (dense, norm if any, activation).
    - Decoder `decoder_dense`: a linear map back to c's width, with its own
      kernel (glorot_uniform, seeded by `seed`) or, with `tied_weights`,
      the encoder's kernel transposed (`decoder_tied`, own bias only).
    - Output: [reconstruction, c] stacked, shape [batch, 2, width of c], so
      `reconstruction_error` scores it without a second input.

    The decoder is linear and the error squared, so the same autoencoder
    serves any activation (a ReLU layer's codes are unbounded).

    Raises:
      ValueError: no dense hidden stack, an index out of range, or a
        denoising rate outside [0, 1).
    """
    import keras

    from zoo.layers import MaskingNoise, StackPair, TiedDense

    (stage,) = schedule(model, [index])
    if not (isinstance(denoising, (int, float)) and 0 <= denoising < 1):
        raise ValueError(
            f"denoising must be in [0, 1). Received: denoising={denoising}"
        )
    dense = model.get_layer(stage.layer.dense)
    block_output = model.get_layer(stage.layer.output)
    # The network's own tensors: the code entering the layer, and its output.
    below = keras.Model(model.input, dense.input, name="below")
    encoder = keras.Model(dense.input, block_output.output, name="encoder")
    below.trainable = False  # sets `trainable` on the shared layers below
    for layer in encoder.layers:
        layer.trainable = True

    inputs = keras.Input(shape=model.input_shape[1:], name="inputs")
    code = below(inputs, training=False)
    corrupted = code
    if denoising:
        corrupted = MaskingNoise(denoising, seed=seed, name="masking_noise")(code)
    hidden = encoder(corrupted)
    if tied_weights:
        decoder = TiedDense(dense, name="decoder_tied")
    else:
        decoder = keras.layers.Dense(
            dense.kernel.shape[0],
            kernel_initializer=keras.initializers.GlorotUniform(seed=seed),
            name="decoder_dense",
        )
    outputs = StackPair(name="reconstruction_and_code")([decoder(hidden), code])
    return keras.Model(inputs, outputs, name=f"{stage.layer.prefix}_autoencoder")
