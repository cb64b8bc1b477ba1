"""zoo/fused_rnn.py: the fused CPU path computes what Keras' LSTM and GRU do."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import fused_rnn

T, D, UNITS, BATCH = 5, 3, 4, 5
LAYERS = {
    "lstm": (fused_rnn.LSTM, keras.layers.LSTM),
    "gru": (fused_rnn.GRU, keras.layers.GRU),
}


def _pair(cell, seed, **kwargs):
    """The fused layer and a plain Keras layer holding the same random weights."""
    fused_class, keras_class = LAYERS[cell]
    fused, plain = fused_class(UNITS, **kwargs), keras_class(UNITS, **kwargs)
    fused.build((BATCH, T, D))
    plain.build((BATCH, T, D))
    rng = np.random.default_rng(seed)
    for v in fused.weights:  # non-zero biases too, so every term is exercised
        v.assign(rng.normal(scale=0.5, size=v.shape).astype(np.float32))
    plain.set_weights(fused.get_weights())
    return fused, plain


def _run(layer, x, states, compiled):
    """The layer's outputs and the gradients of a weighted sum of them."""

    def run(x, states):
        with tf.GradientTape() as tape:
            tape.watch([x, *states])
            out = layer(x, initial_state=states or None, training=True)
            out = list(out) if isinstance(out, list | tuple) else [out]
            # Every output element weighted differently, so a transposed or
            # misplaced gradient cannot cancel out.
            loss = 0.0
            for o in out:
                weights = np.sin(np.arange(np.prod(o.shape))).reshape(o.shape)
                loss += tf.reduce_sum(o * weights.astype(np.float32))
        return out, tape.gradient(loss, [x, *states, *layer.trainable_weights])

    run = tf.function(run) if compiled else run
    out, grads = run(tf.constant(x), [tf.constant(s) for s in states])
    return [o.numpy() for o in out], [g.numpy() for g in grads]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize(
    "kwargs,with_states,compiled,parts",
    [
        ({}, False, False, 1),
        ({"return_sequences": True, "return_state": True}, True, True, 1),
        # The batch of 5 in uneven slices (2, 2, 1), each its own loop.
        ({"return_sequences": True, "return_state": True}, True, True, 3),
    ],
)
def test_outputs_and_gradients_equal_keras(
    cell, kwargs, with_states, compiled, parts, monkeypatch
):
    monkeypatch.setattr(fused_rnn, "parts_for", lambda batch: parts)
    fused, plain = _pair(cell, seed=1, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, T, D)).astype(np.float32)
    num_states = {"lstm": 2, "gru": 1}[cell] if with_states else 0
    states = [rng.normal(size=(BATCH, UNITS)).astype(np.float32)] * num_states
    out, grads = _run(fused, x, states, compiled)
    ref_out, ref_grads = _run(plain, x, states, compiled)
    for a, b in zip(out + grads, ref_out + ref_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    # Nothing vacuous: the gradients reach the inputs and every weight.
    assert all(np.abs(g).max() > 1e-3 for g in grads)


def _forward_loops(layer, x) -> int:
    """How many XLA loops of zoo/fused_rnn.py the layer's graph calls."""
    graph = tf.function(layer).get_concrete_function(x).graph.as_graph_def()
    loops = {
        f.signature.name
        for f in graph.library.function
        if "_lstm_forward" in f.signature.name or "_gru_forward" in f.signature.name
    }
    return sum(
        node.op in loops or node.attr["f"].func.name in loops for node in graph.node
    )


def _takes_fused_path(layer, x):
    return _forward_loops(layer, x) > 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_fused_path_is_taken_on_cpu_and_only_where_it_applies(cell):
    x = tf.zeros((BATCH, T, D))
    fused, _ = _pair(cell, seed=0)
    assert _takes_fused_path(fused, x)
    for kwargs in ({"go_backwards": True}, {"activation": "relu"}):
        assert not _takes_fused_path(_pair(cell, seed=0, **kwargs)[0], x)
    if cell == "gru":
        assert not _takes_fused_path(_pair(cell, seed=0, reset_after=False)[0], x)


def test_a_batch_is_cut_into_one_slice_per_core_of_at_least_16_rows(monkeypatch):
    monkeypatch.setattr(fused_rnn, "_cores", lambda: 2)
    assert [fused_rnn.parts_for(b) for b in (None, 1, 31, 32, 64, 1000)] == [
        1,
        1,
        1,
        2,
        2,
        2,
    ]
    monkeypatch.setattr(fused_rnn, "_cores", lambda: 8)
    assert [fused_rnn.parts_for(b) for b in (None, 31, 64, 1000)] == [1, 1, 4, 8]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_layer_runs_one_loop_per_slice(cell, monkeypatch):
    monkeypatch.setattr(fused_rnn, "_cores", lambda: 2)
    fused, _ = _pair(cell, seed=0)
    assert _forward_loops(fused, tf.zeros((32, T, D))) == 2
    assert _forward_loops(fused, tf.zeros((31, T, D))) == 1


def test_a_batch_too_small_or_unknown_for_its_slices_is_refused():
    x, h0 = tf.zeros((2, T, D)), tf.zeros((2, UNITS))
    w, u, b = (
        tf.zeros((D, 3 * UNITS)),
        tf.zeros((UNITS, 3 * UNITS)),
        tf.zeros((2, 3 * UNITS)),
    )
    with pytest.raises(ValueError, match="batch of 2 into 3 slices"):
        fused_rnn.gru_sequence(x, h0, w, u, b, parts=3)
    with pytest.raises(ValueError, match="batch of None into 2 slices"):
        tf.function(
            lambda x: fused_rnn.gru_sequence(x, h0, w, u, b, parts=2)
        ).get_concrete_function(tf.TensorSpec((None, T, D)))


def test_the_cores_are_tensorflows_inter_op_threads(monkeypatch):
    monkeypatch.setattr(
        tf.config.threading, "get_inter_op_parallelism_threads", lambda: 0
    )
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "3")
    assert fused_rnn._cores() == 3
    monkeypatch.delenv("TF_NUM_INTEROP_THREADS")
    assert fused_rnn._cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("name", ["lstm", "gru"])
def test_zoo_weights_load_into_plain_keras_layers(name, tmp_path):
    """A zoo model's weights file loads into the same net built from Keras' layers."""
    model = zoo.get_model(name, input_shape=(T, D), num_outputs=2, units=UNITS)
    assert isinstance(model.get_layer("block00_rnn"), LAYERS[name][0])
    model.save_weights(tmp_path / "m.weights.h5")
    inputs = keras.Input((T, D))
    hidden = LAYERS[name][1](UNITS, name="block00_rnn")(inputs)
    plain = keras.Model(inputs, keras.layers.Dense(2, name="head_dense")(hidden))
    plain.load_weights(tmp_path / "m.weights.h5")
    x = np.random.default_rng(0).normal(size=(BATCH, T, D)).astype(np.float32)
    np.testing.assert_allclose(plain(x), model(x), rtol=0, atol=1e-5)
