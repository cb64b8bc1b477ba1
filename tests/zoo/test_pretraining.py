"""The pretraining pieces on every registered MLP: the hidden stack, the
greedy schedule, the autoencoder around one layer (untied, tied, denoising)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import pretraining
from zoo.layers import MaskingNoise

MLPS = ("plain_mlp", "residual_mlp")


def _net(name, **kwargs):
    keras.utils.set_random_seed(0)
    kwargs = {"depth": 3, "width": 8, "activation": "sigmoid", **kwargs}
    return zoo.get_model(name, input_shape=(6,), num_outputs=3, **kwargs)


@pytest.mark.parametrize("name", MLPS)
def test_schedule_goes_up_the_stack_freezing_what_is_below(name):
    net = _net(name, norm="layer")
    stack = pretraining.hidden_stack(net)
    assert [(h.dense, h.output) for h in stack] == [
        (f"block0{i}_dense", f"block0{i}_act") for i in range(3)
    ]
    stages = pretraining.schedule(net)
    assert [s.index for s in stages] == [0, 1, 2]
    assert stages[0].frozen == ()
    assert stages[2].trained == (
        "block02_dense/kernel",
        "block02_dense/bias",
        "block02_norm/gamma",
        "block02_norm/beta",
    )
    assert set(stages[2].frozen) == set(stages[0].trained + stages[1].trained)
    assert [s.index for s in pretraining.schedule(net, [1, 2])] == [1, 2]


@pytest.mark.parametrize("name", MLPS)
@pytest.mark.parametrize("tied", [False, True])
def test_autoencoder_trains_its_layer_only(name, tied):
    net = _net(name)
    ae = pretraining.layer_autoencoder(net, 1, tied_weights=tied, denoising=0.25)
    decoder = (
        ["decoder_tied/bias"]
        if tied
        else [
            "decoder_dense/kernel",
            "decoder_dense/bias",
        ]
    )
    assert [v.path for v in ae.trainable_variables] == [
        "block01_dense/kernel",
        "block01_dense/bias",
        *decoder,
    ]
    x = np.random.default_rng(0).random((16, 6)).astype("float32")
    before = {v.path: v.numpy().copy() for v in net.weights}
    optimizer = keras.optimizers.SGD(0.5)
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                pretraining.reconstruction_error(None, ae(x, training=True))
            )
        grads = tape.gradient(loss, ae.trainable_variables)
        optimizer.apply_gradients(zip(grads, ae.trainable_variables))
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    for v in net.weights:
        changed = not np.array_equal(before[v.path], v.numpy())
        assert changed == v.path.startswith("block01_dense"), v.path
    # The code the layer reads is the network's own: the input to block01.
    code = ae(x, training=False)[:, 1]
    below = keras.Model(net.input, net.get_layer("block01_dense").input)
    np.testing.assert_array_equal(code.numpy(), below(x).numpy())
    pretraining.unfreeze(net)
    assert len(net.trainable_variables) == 8


def test_masking_noise_zeroes_a_fraction_and_draws_from_its_count():
    noise = MaskingNoise(0.5, seed=3)
    x = tf.ones((200, 50))
    first, second = noise(x, training=True), noise(x, training=True)
    assert 0.45 < float(tf.reduce_mean(first)) < 0.55
    assert not np.array_equal(first.numpy(), second.numpy())
    noise.calls.assign(0)  # a restored count replays the same masks
    np.testing.assert_array_equal(noise(x, training=True).numpy(), first.numpy())
    np.testing.assert_array_equal(noise(x, training=False).numpy(), x.numpy())


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no dense hidden stack"):
        pretraining.hidden_stack(
            zoo.get_model("lstm", input_shape=(5, 2), num_outputs=3, units=4)
        )
    net = _net("plain_mlp")
    with pytest.raises(ValueError, match="out of range: .* hidden layers 0-2"):
        pretraining.layer_autoencoder(net, 3)
    with pytest.raises(ValueError, match="distinct and in increasing order"):
        pretraining.schedule(net, [1, 0])
    with pytest.raises(ValueError, match=r"denoising must be in \[0, 1\)"):
        pretraining.layer_autoencoder(net, 0, denoising=1.0)
