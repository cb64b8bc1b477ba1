"""Every registered model builds; the MLP pair's exact shapes, names and errors.

The recurrent family's own tests are in test_rnn.py.
"""

import keras
import numpy as np
import pytest

import zoo
from zoo import blocks, fused_rnn, pretraining

INPUTS = {"vector": (12,), "image": (4, 4, 1), "sequence": (5, 2)}


@pytest.mark.parametrize("name", zoo.list_models())
def test_every_registered_model_builds_tiny_and_returns_logits(name):
    spec = zoo.model_spec(name)
    for kind in spec.input_kinds:
        model = zoo.get_model(
            name, input_shape=INPUTS[kind], num_outputs=3, **spec.tiny
        )
        out = model(np.zeros((2, *INPUTS[kind]), np.float32))
        assert out.shape == (2, 3)
        try:  # the declared dense stack (checked by configs unbuilt) is real
            has_stack = bool(pretraining.hidden_stack(model))
        except ValueError:
            has_stack = False
        assert has_stack == spec.dense_stack
        # "bfc" is declared by the models built on the fused recurrent path.
        fused = any(
            isinstance(layer, fused_rnn.LSTM | fused_rnn.GRU) for layer in model.layers
        )
        assert spec.cpu_allocator == ("bfc" if fused else "default")


@pytest.mark.parametrize(
    "name", [n for n in zoo.list_models() if zoo.model_spec(n).predicts_per_step]
)
def test_per_step_models_return_logits_at_every_time_step(name):
    spec = zoo.model_spec(name)
    assert spec.input_kinds == ("sequence",)
    model = zoo.get_model(
        name,
        input_shape=INPUTS["sequence"],
        num_outputs=3,
        output_per_step=True,
        **spec.tiny,
    )
    out = model(np.zeros((2, *INPUTS["sequence"]), np.float32))
    assert out.shape == (2, INPUTS["sequence"][0], 3)


def test_mlp_parameter_count_is_exact():
    # 20 blocks of 64x64 + 64, except block 0 which sees the 64-dim input
    # too, plus a 64x10 + 10 head.
    for name in ("plain_mlp", "residual_mlp"):
        model = zoo.get_model(
            name, input_shape=(64,), num_outputs=10, depth=20, width=64
        )
        assert model.count_params() == 20 * (64 * 64 + 64) + 64 * 10 + 10
    bn = zoo.get_model(
        "plain_mlp", input_shape=(8,), num_outputs=2, depth=3, width=5, norm="batch"
    )
    # Dense (8*5+5) + 2*(5*5+5) + head (5*2+2) + BN 4 per unit (2 trainable).
    assert bn.count_params() == 45 + 60 + 12 + 3 * 4 * 5
    assert (
        sum(int(np.prod(v.shape)) for v in bn.trainable_variables)
        == 45 + 60 + 12 + 3 * 2 * 5
    )


def test_pair_arms_have_the_same_variables_and_differ_in_outputs_only_by_skips():
    keras.utils.set_random_seed(0)
    plain = zoo.get_model(
        "plain_mlp", input_shape=(6,), num_outputs=2, depth=4, width=6
    )
    keras.utils.set_random_seed(0)
    residual = zoo.get_model(
        "residual_mlp", input_shape=(6,), num_outputs=2, depth=4, width=6
    )
    assert [v.path for v in plain.weights] == [v.path for v in residual.weights]
    for a, b in zip(plain.weights, residual.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    assert not np.allclose(plain(x), residual(x))
    adds = [layer.name for layer in residual.layers if layer.name.endswith("_add")]
    assert adds == ["block01_add", "block02_add", "block03_add"]


def test_layer_names_are_zero_padded_in_depth_order():
    model = zoo.get_model(
        "plain_mlp", input_shape=(3,), num_outputs=2, depth=101, width=2
    )
    dense = [layer.name for layer in model.layers if layer.name.endswith("_dense")]
    assert dense[0] == "block000_dense" and dense[100] == "block100_dense"
    assert dense[:101] == sorted(dense[:101])
    assert dense[-1] == "head_dense"


@pytest.mark.parametrize("activation", blocks.ACTIVATIONS)
def test_every_activation_builds(activation):
    model = zoo.get_model(
        "plain_mlp",
        input_shape=(3,),
        num_outputs=2,
        depth=2,
        width=4,
        activation=activation,
    )
    assert model.get_layer("block01_act").get_config()["activation"] == activation


@pytest.mark.parametrize("initializer", blocks.INITIALIZERS)
def test_every_initializer_builds_and_layers_get_distinct_weights(initializer):
    model = zoo.get_model(
        "plain_mlp",
        input_shape=(4,),
        num_outputs=2,
        depth=3,
        width=4,
        initializer=initializer,
    )
    k1 = model.get_layer("block01_dense").kernel.numpy()
    k2 = model.get_layer("block02_dense").kernel.numpy()
    if initializer == "identity":
        np.testing.assert_array_equal(k1, np.eye(4))
    else:
        assert not np.array_equal(k1, k2)  # one reused unseeded init would repeat


def test_small_normal_uses_init_std():
    keras.utils.set_random_seed(1)
    model = zoo.get_model(
        "plain_mlp",
        input_shape=(256,),
        num_outputs=2,
        depth=1,
        width=256,
        initializer="small_normal",
        init_std=0.01,
    )
    assert 0.009 < model.get_layer("block00_dense").kernel.numpy().std() < 0.011


@pytest.mark.parametrize(
    "norm,layer", [("batch", "BatchNormalization"), ("layer", "LayerNormalization")]
)
def test_norm_layers(norm, layer):
    model = zoo.get_model(
        "residual_mlp", input_shape=(3,), num_outputs=2, depth=2, width=4, norm=norm
    )
    norm_layer = model.get_layer("block01_norm")
    assert type(norm_layer).__name__ == layer
    if norm == "batch":  # whole-batch statistics under a multi-replica strategy
        assert norm_layer.synchronized


def test_l1_l2_add_one_penalty_per_kernel():
    model = zoo.get_model(
        "plain_mlp", input_shape=(3,), num_outputs=2, depth=2, width=4, l1=0.1, l2=0.2
    )
    model(np.ones((1, 3), np.float32))
    assert len(model.losses) == 3
    kernels = [
        model.get_layer(n).kernel.numpy()
        for n in ("block00_dense", "block01_dense", "head_dense")
    ]
    expected = sum(0.1 * np.abs(k).sum() + 0.2 * (k**2).sum() for k in kernels)
    np.testing.assert_allclose(float(sum(model.losses)), expected, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"depth": 0}, "Received: depth=0"),
        ({"depth": -3}, "Received: depth=-3"),
        ({"width": 0}, "Received: width=0"),
        ({"activation": "swish"}, "Unknown activation 'swish'"),
        ({"initializer": "zeros"}, "Unknown initializer 'zeros'"),
        ({"norm": "group"}, "Unknown norm 'group'"),
        ({"initializer": "small_normal", "init_std": 0.0}, "init_std must be positive"),
        ({"l2": -1.0}, "l1 and l2 must be >= 0"),
        ({"dropout": 0.1}, "takes no argument dropout"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        zoo.get_model("plain_mlp", input_shape=(3,), num_outputs=2, **kwargs)


def test_unknown_model_lists_known_ones():
    known = ", ".join(zoo.list_models())
    with pytest.raises(ValueError, match=f"Unknown model 'mlp'. Known models: {known}"):
        zoo.get_model("mlp", input_shape=(3,), num_outputs=2)


def test_saved_model_keeps_its_arguments(tmp_path):
    model = zoo.get_model(
        "residual_mlp",
        input_shape=(5,),
        num_outputs=3,
        depth=4,
        width=7,
        activation="tanh",
        norm="layer",
    )
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    x = np.ones((2, 5), np.float32)
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6)
    assert loaded.count_params() == model.count_params()
