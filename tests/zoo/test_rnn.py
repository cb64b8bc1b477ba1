"""The recurrent family: shapes, names, exact recurrent inits, probes, saving."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo.layers import RecurrentInitializer
from zoo.rnn import hidden_state_model, recurrent_layers

RNNS = ("vanilla_rnn", "lstm", "gru")
GATE_BLOCKS = {"vanilla_rnn": 1, "lstm": 4, "gru": 3}
T, D = 5, 3  # time steps, features


def _build(name, **kwargs):
    kwargs = {"units": 4, **kwargs}
    return zoo.get_model(name, input_shape=(T, D), num_outputs=2, **kwargs)


def _x(batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, T, D)).astype(np.float32)


def _gate_blocks(model, layer="block00_rnn"):
    """The [n, n] gate blocks of a layer's recurrent kernel, in float64."""
    kernel = model.get_layer(layer).cell.recurrent_kernel.numpy().astype(np.float64)
    n = kernel.shape[0]
    return [kernel[:, i : i + n] for i in range(0, kernel.shape[1], n)]


@pytest.mark.parametrize("name", RNNS)
@pytest.mark.parametrize("num_layers", [1, 2])
@pytest.mark.parametrize("output_per_step", [False, True])
def test_output_shapes(name, num_layers, output_per_step):
    model = _build(name, num_layers=num_layers, output_per_step=output_per_step)
    expected = (3, T, 2) if output_per_step else (3, 2)
    assert model(_x()).shape == expected
    assert zoo.model_spec(name).predicts_per_step


def test_layer_and_variable_names():
    model = _build("lstm", num_layers=2, norm="layer")
    assert [layer.name for layer in model.layers] == [
        "inputs",
        "block00_rnn",
        "block00_norm",
        "block01_rnn",
        "block01_norm",
        "head_dense",
    ]
    assert [layer.name for layer in recurrent_layers(model)] == [
        "block00_rnn",
        "block01_rnn",
    ]
    assert [v.path for v in model.weights] == [
        "block00_rnn/lstm_cell/kernel",
        "block00_rnn/lstm_cell/recurrent_kernel",
        "block00_rnn/lstm_cell/bias",
        "block00_norm/gamma",
        "block00_norm/beta",
        "block01_rnn/lstm_cell/kernel",
        "block01_rnn/lstm_cell/recurrent_kernel",
        "block01_rnn/lstm_cell/bias",
        "block01_norm/gamma",
        "block01_norm/beta",
        "head_dense/kernel",
        "head_dense/bias",
    ]
    cells = {n: type(_build(n).get_layer("block00_rnn")).__name__ for n in RNNS}
    assert cells == {"vanilla_rnn": "SimpleRNN", "lstm": "LSTM", "gru": "GRU"}


@pytest.mark.parametrize("name", RNNS)
@pytest.mark.parametrize("radius", [0.5, 1.2])
def test_each_gate_block_gets_the_requested_spectral_radius(name, radius):
    for kind in ("orthogonal", "identity", "normal"):
        model = _build(name, recurrent_initializer=kind, spectral_radius=radius)
        blocks = _gate_blocks(model)
        assert len(blocks) == GATE_BLOCKS[name]
        for b in blocks:
            if kind == "identity":
                np.testing.assert_array_equal(b, np.float32(radius) * np.eye(4))
            elif kind == "orthogonal":
                np.testing.assert_allclose(np.linalg.svd(b)[1], radius, rtol=1e-5)
            else:
                eig = np.abs(np.linalg.eigvals(b)).max()
                np.testing.assert_allclose(eig, radius, rtol=1e-5)
        if kind != "identity" and len(blocks) > 1:  # each gate its own draw
            assert not np.allclose(blocks[0], blocks[1])


def test_irnn_is_relu_with_identity_recurrent_kernel():
    model = _build("vanilla_rnn", activation="relu", recurrent_initializer="identity")
    layer = model.get_layer("block00_rnn")
    assert layer.get_config()["activation"] == "relu"
    np.testing.assert_array_equal(layer.cell.recurrent_kernel.numpy(), np.eye(4))


def test_normal_init_is_exact_at_the_paper_scale_too():
    # 128 units, as the pairs use: the rescaling is exact whatever the size.
    init = RecurrentInitializer("normal", 1.5, seed=0)
    kernel = np.asarray(init((128, 128)), np.float64)
    np.testing.assert_allclose(np.abs(np.linalg.eigvals(kernel)).max(), 1.5, rtol=1e-5)


def test_models_are_reproducible_under_set_random_seed():
    def weights(seed):
        keras.utils.set_random_seed(seed)
        model = _build("lstm", num_layers=2, recurrent_initializer="normal")
        return [v.numpy() for v in model.weights]

    first, again, other = weights(7), weights(7), weights(8)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])  # block00 recurrent kernel
    assert not np.array_equal(first[1], first[4])  # layers draw separately


def test_recurrent_initializer_seed_config_and_shape_check():
    init = RecurrentInitializer("orthogonal", 0.9, seed=3)
    np.testing.assert_array_equal(init((4, 8)), init((4, 8)))
    assert init.get_config() == {
        "kind": "orthogonal",
        "spectral_radius": 0.9,
        "seed": 3,
    }
    clone = RecurrentInitializer.from_config(init.get_config())
    np.testing.assert_array_equal(clone((4, 8)), init((4, 8)))
    with pytest.raises(ValueError, match=r"Received: shape=\(4, 6\)"):
        init((4, 6))


@pytest.mark.parametrize("unit_forget_bias", [True, False])
def test_unit_forget_bias_sets_the_forget_gate_slice(unit_forget_bias):
    model = _build("lstm", unit_forget_bias=unit_forget_bias)
    bias = model.get_layer("block00_rnn").cell.bias.numpy()
    n = 4  # gates i, f, c, o
    np.testing.assert_array_equal(bias[n : 2 * n], float(unit_forget_bias))
    np.testing.assert_array_equal(np.delete(bias, np.s_[n : 2 * n]), 0.0)


@pytest.mark.parametrize(
    "kwargs,num_losses",
    [
        ({}, 0),
        ({"l2": 0.1}, 3),  # two input kernels and the head
        ({"recurrent_l2": 0.2}, 2),  # two recurrent kernels
        ({"l1": 0.1, "recurrent_l1": 0.2}, 5),
    ],
)
def test_penalties_add_one_loss_per_penalized_kernel(kwargs, num_losses):
    model = _build("gru", num_layers=2, **kwargs)
    model(_x())
    assert len(model.losses) == num_losses
    if kwargs == {"recurrent_l2": 0.2}:
        expected = sum(
            0.2 * (layer.cell.recurrent_kernel.numpy() ** 2).sum()
            for layer in recurrent_layers(model)
        )
        np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "name,kwargs,match",
    [
        ("vanilla_rnn", {"spectral_radius": 0.0}, r"Received: spectral_radius=0\.0"),
        ("lstm", {"spectral_radius": -1.0}, r"Received: spectral_radius=-1\.0"),
        ("gru", {"spectral_radius": float("inf")}, "positive and finite"),
        ("gru", {"spectral_radius": float("nan")}, "positive and finite"),
        ("lstm", {"norm": "batch"}, "Unknown norm 'batch'"),
        ("vanilla_rnn", {"units": 0}, "Received: units=0"),
        ("gru", {"num_layers": 0}, "Received: num_layers=0"),
        ("lstm", {"recurrent_initializer": "zeros"}, "recurrent_initializer='zeros'"),
        ("vanilla_rnn", {"activation": "swish"}, "Unknown activation 'swish'"),
        ("gru", {"initializer": "zeros"}, "Unknown initializer 'zeros'"),
        ("lstm", {"recurrent_l2": -1.0}, "Received: recurrent_l1=0.0, recurrent_l2"),
        ("lstm", {"activation": "relu"}, "takes no argument activation"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _build(name, **kwargs)


def test_non_sequence_input_shape_is_refused():
    with pytest.raises(ValueError, match=r"Received: input_shape=\(6,\)"):
        zoo.get_model("lstm", input_shape=(6,), num_outputs=2, units=4)


@pytest.mark.parametrize("name", RNNS)
def test_hidden_state_model_shares_weights_and_leaves_outputs_alone(name):
    model = _build(name, num_layers=2, norm="layer")
    x = _x()
    before = model(x).numpy()
    for layer in recurrent_layers(model):
        probe = hidden_state_model(model, layer.name)
        states = probe(x).numpy()
        assert states.shape == (3, T, 4)
        # The layer's own variables and those below it; no new ones.
        probe_ids = {id(v) for v in probe.weights}
        assert {id(v) for v in layer.weights} <= probe_ids
        assert probe_ids <= {id(v) for v in model.weights}
        own = keras.Model(model.input, layer.output)(x).numpy()
        if layer.name == "block00_rnn":  # returns its sequence to block01
            np.testing.assert_allclose(states, own, rtol=1e-6, atol=1e-6)
        else:  # the last layer returns its final state only
            np.testing.assert_allclose(states[:, -1], own, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(model(x).numpy(), before)
    assert len(model.layers) == 6


def test_hidden_state_model_follows_the_models_weights_and_refuses_non_rnns():
    model = _build("vanilla_rnn")
    probe = hidden_state_model(model)
    x = _x()
    kernel = model.get_layer("block00_rnn").cell.kernel
    kernel.assign(2 * kernel.numpy())
    own = keras.Model(model.input, model.get_layer("block00_rnn").output)(x)
    np.testing.assert_allclose(probe(x)[:, -1], own, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="Received: layer='head_dense'"):
        hidden_state_model(model, "head_dense")


@pytest.mark.parametrize("name", RNNS)
def test_save_and_load_give_identical_outputs(name, tmp_path):
    model = _build(
        name,
        num_layers=2,
        output_per_step=True,
        recurrent_initializer="normal",
        spectral_radius=0.9,
        norm="layer",
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = _x()
    np.testing.assert_array_equal(loaded(x), model(x))
    init = loaded.get_layer("block01_rnn").cell.recurrent_initializer
    assert isinstance(init, RecurrentInitializer)
    assert (init.kind, init.spectral_radius) == ("normal", 0.9)


def test_parameter_counts_match_the_keras_formulas():
    # Per layer with input width d and n units: SimpleRNN d*n + n*n + n;
    # LSTM 4 times that; GRU 3 (d*n + n*n + 2n) (reset_after: two biases).
    # Two layers (d = 3, then 4), n = 4, head 4*2 + 2, LayerNorm 2n each.
    def rnn(d, n):
        return d * n + n * n + n

    head = 4 * 2 + 2
    expected = {
        "vanilla_rnn": rnn(3, 4) + rnn(4, 4) + head,
        "lstm": 4 * (rnn(3, 4) + rnn(4, 4)) + head,
        "gru": 3 * (rnn(3, 4) + 4) + 3 * (rnn(4, 4) + 4) + head,
    }
    assert expected == {"vanilla_rnn": 78, "lstm": 282, "gru": 238}
    for name, count in expected.items():
        assert _build(name, num_layers=2).count_params() == count
        assert _build(name, num_layers=2, norm="layer").count_params() == count + 16


def test_builds_under_a_mirrored_strategy_with_exact_radius():
    # The trainer builds models in a strategy scope; NumPy's eigenvalues still
    # run eagerly there because Keras creates variables under tf.init_scope.
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _build("lstm", recurrent_initializer="normal", spectral_radius=1.1)
    for b in _gate_blocks(model):
        np.testing.assert_allclose(np.abs(np.linalg.eigvals(b)).max(), 1.1, rtol=1e-5)
