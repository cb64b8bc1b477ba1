"""zoo.depth_axis: every registered model declares a valid one; the fallback.

A depth axis is what analysis/gradients.py's `gradient_profile` orders the
gradient norms by, so each case ends with a profile taken along it.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from analysis import gradients

INPUTS = {"vector": (12,), "image": (4, 4, 1), "sequence": (5, 2)}
CNNS = ("plain_cnn", "resnet")


def _profile(model, num_outputs=3):
    """The gradient profile of `model` on a fixed random batch."""
    x = np.random.default_rng(0).normal(size=(4, *model.input_shape[1:]))
    y = np.arange(4) % num_outputs

    def loss(y, logits):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)

    norms = gradients.layer_gradient_norms(model, x.astype(np.float32), y, loss)
    return gradients.gradient_profile(norms, zoo.depth_axis(model))


def _check_valid(model, axis):
    paths = [path for _, path in axis]
    positions = [position for position, _ in axis]
    assert set(paths) <= {v.path for v in model.trainable_variables}
    assert len(set(paths)) == len(paths)
    assert positions == sorted(positions) and len(set(positions)) >= 2


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_declares_a_valid_depth_axis(name):
    spec = zoo.model_spec(name)
    keras.utils.set_random_seed(0)
    model = zoo.get_model(
        name, input_shape=INPUTS[spec.input_kinds[0]], num_outputs=3, **spec.tiny
    )
    assert model.name == name  # how depth_axis finds the declaration
    axis = zoo.depth_axis(model)
    _check_valid(model, axis)
    resolved = spec.resolve(**spec.tiny)
    depth = resolved["depth"] if "depth" in resolved else resolved["num_layers"]
    positions = sorted({position for position, _ in axis})
    if name in CNNS:
        # A 6n+2-layer CNN: the stem, then 3n blocks of two convolutions.
        assert positions == list(range((depth - 2) // 2 + 1))
    else:
        assert [position for position, _ in axis] == list(range(depth))
        # The same set today's profiles and older run directories use (the
        # families of gradzoo-run-1; the CNNs came later).
        assert axis == gradients.legacy_depth_axis(v.path for v in model.variables)
    assert axis == tuple(spec.depth_axis(model))
    profile = _profile(model)
    # A position shared by several variables is one entry, "a+b".
    joined = {}
    for position, path in axis:
        joined[position] = f"{joined[position]}+{path}" if position in joined else path
    assert profile.layers == tuple(joined.values())


def test_declared_axes_name_the_hidden_kernels_in_depth_order():
    mlp = zoo.get_model("plain_mlp", input_shape=(6,), num_outputs=2, depth=11)
    assert zoo.depth_axis(mlp)[::10] == (
        (0, "block00_dense/kernel"),
        (10, "block10_dense/kernel"),
    )
    gru = zoo.get_model("gru", input_shape=(5, 2), num_outputs=2, num_layers=3)
    assert zoo.depth_axis(gru) == (
        (0, "block00_rnn/gru_cell/kernel"),
        (1, "block01_rnn/gru_cell/kernel"),
        (2, "block02_rnn/gru_cell/kernel"),
    )


def test_a_one_layer_model_has_no_profile_but_its_axis_can_be_recorded():
    lstm = zoo.get_model("lstm", input_shape=(5, 2), num_outputs=2, units=4)
    with pytest.raises(ValueError, match="has 1 depth position"):
        zoo.depth_axis(lstm)
    assert zoo.depth_axis(lstm, min_positions=1) == (
        (0, "block00_rnn/lstm_cell/kernel"),
    )


def test_fallback_on_a_user_sequential_mlp():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(3),
        ],
        name="my_mlp",
    )
    axis = zoo.depth_axis(model)
    _check_valid(model, axis)
    kernels = [layer.kernel.path for layer in model.layers]
    assert axis == tuple(enumerate(kernels))
    assert len(_profile(model).norms) == 3


def test_fallback_on_a_small_conv_model_skips_layers_without_a_kernel():
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(2, 3, name="conv_a")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Conv2D(2, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="logits")(x))
    axis = zoo.depth_axis(model)
    _check_valid(model, axis)
    assert axis == ((0, "conv_a/kernel"), (1, "conv_b/kernel"), (2, "logits/kernel"))
    assert _profile(model).layers == ("conv_a/kernel", "conv_b/kernel", "logits/kernel")


@pytest.mark.parametrize(
    "axis, message",
    [
        (
            [(0, "dense_a/kernel"), (1, "nope/kernel")],
            "'nope/kernel' is not a trainable",
        ),
        ([(1, "dense_a/kernel"), (0, "dense_b/kernel")], "positions must not decrease"),
        ([(0, "dense_a/kernel"), (0, "dense_a/kernel")], "listed twice"),
        ([(0, "dense_a/kernel"), (0, "dense_b/kernel")], "has 1 depth position"),
        ([("0", "dense_a/kernel"), (1, "dense_b/kernel")], "(position, path) pairs"),
        ([], "has 0 depth position"),
    ],
)
def test_bad_declared_axes_are_refused_in_one_line(monkeypatch, axis, message):
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="dense_a")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2, name="dense_b")(x), name="fake")
    spec = zoo.ModelSpec("fake", lambda: model, ("vector",), {}, lambda m: axis)
    monkeypatch.setitem(zoo.registry._MODELS, "fake", spec)
    with pytest.raises(ValueError) as error:
        zoo.depth_axis(model)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(error.value).startswith("Depth axis of model 'fake'")


def test_a_frozen_kernel_is_not_on_the_fallback_axis():
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3), keras.layers.Dense(3)]
    )
    model.layers[0].trainable = False
    with pytest.raises(ValueError, match="has 1 depth position"):
        zoo.depth_axis(model)
