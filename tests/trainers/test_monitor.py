"""trainers/monitor.py: gradient norms of model.fit runs, as a trainer logs them."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from analysis import compare, gradients, schema
from analysis.rundir import load_run
from trainers import loop, monitor

RTOL = 1e-6
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def _data(n=32, features=8, classes=3):
    rng = np.random.RandomState(0)
    x = rng.randn(n, features).astype("float32")
    y = rng.randint(0, classes, n).astype("int32")
    return x, y


def _mlp(seed=0):
    keras.utils.set_random_seed(seed)
    return zoo.get_model("plain_mlp", input_shape=(8,), num_outputs=3, depth=3, width=6)


def _fit(model, path, *, optimizer=None, every=2, epochs=1, batch=8, **compile_kw):
    x, y = _data()
    if optimizer is not None:
        optimizer = monitor.watch(optimizer)
    model.compile(optimizer=optimizer, loss=LOSS, **compile_kw)
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[monitor.GradientLogger(str(path), every_n_steps=every)],
    )
    return load_run(str(path))


def _assert_close(got: dict, want: dict, rtol=RTOL):
    assert set(got) == set(want)
    worst = max(abs(got[k] - want[k]) / max(abs(want[k]), 1e-30) for k in want)
    assert worst <= rtol, worst


@pytest.mark.parametrize(
    "compile_kw",
    [{}, {"jit_compile": True}, {"steps_per_execution": 3}],
    ids=["plain", "jit", "spe3"],
)
def test_norms_equal_the_reference_and_no_step_is_lost(tmp_path, compile_kw):
    model = _mlp()
    x, y = _data()
    want = gradients.layer_gradient_norms(model, x[:8], y[:8], LOSS)
    run = _fit(
        model, tmp_path / "run", optimizer=keras.optimizers.SGD(0.1), **compile_kw
    )
    # 4 steps, logged at 1 and every 2: none lost to steps_per_execution.
    assert [r.step for r in run.metrics] == [1, 2, 4]
    _assert_close(run.metrics[0].grad_norms, want)
    first = run.metrics[0]
    assert first.grad_global_norm == pytest.approx(
        float(np.sqrt(sum(v**2 for v in want.values()))), rel=1e-6
    )
    assert first.learning_rate == pytest.approx(0.1)
    assert run.status.state == "completed" and run.status.step == 4
    record = run.record
    assert record.config["trainer"] == "model.fit"
    assert record.depth_axis == [list(e) for e in zoo.depth_axis(model)]
    # Later steps: the same with and without steps_per_execution.
    if "steps_per_execution" in compile_kw:
        base = _fit(_mlp(), tmp_path / "base", optimizer=keras.optimizers.SGD(0.1))
        for got, ref in zip(run.metrics, base.metrics):
            _assert_close(got.grad_norms, ref.grad_norms, 1e-5)


def test_norms_equal_gradzoos_train_step(tmp_path):
    x, y = _data()
    model = _mlp()
    objective = loop.Objective(
        loss=lambda y, out: keras.losses.sparse_categorical_crossentropy(
            y, out, from_logits=True
        ),
        metrics=lambda y, out: {},
        main_metric="loss",
        higher_is_better=False,
    )
    twin = _mlp()
    step = loop.TrainStep(
        twin,
        objective,
        keras.optimizers.SGD(0.1),
        strategy=tf.distribute.get_strategy(),
        batch_size=8,
    )
    stats = step(iter(tf.data.Dataset.from_tensors((x[:8], y[:8]))), with_norms=True)
    want = dict(zip(step.paths, stats["grad_norms"].numpy().tolist()))
    run = _fit(model, tmp_path / "run", optimizer=keras.optimizers.SGD(0.1))
    _assert_close(run.metrics[0].grad_norms, want)
    assert run.metrics[0].grad_global_norm == pytest.approx(
        float(stats["grad_global_norm"]), rel=RTOL
    )


def test_mirrored_norms_equal_single_device_norms(tmp_path):
    x, y = _data()
    want = gradients.layer_gradient_norms(_mlp(), x[:8], y[:8], LOSS)
    single = _fit(_mlp(), tmp_path / "single", optimizer=keras.optimizers.SGD(0.1))
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = _mlp()
        run = _fit(model, tmp_path / "mirrored", optimizer=keras.optimizers.SGD(0.1))
    assert run.record.num_replicas == 2
    _assert_close(run.metrics[0].grad_norms, want)
    assert [r.step for r in run.metrics] == [r.step for r in single.metrics]
    for got, ref in zip(run.metrics, single.metrics):
        _assert_close(got.grad_norms, ref.grad_norms, 1e-5)


def test_mixed_float16_with_loss_scale_optimizer(tmp_path):
    x, y = _data()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _mlp()
        optimizer = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
        scale = optimizer.initial_scale
        # The reference backward pass is scaled too: unscaled, float16
        # gradients below 6e-5 are subnormal and lose digits (7.8e-6 off).
        with tf.GradientTape() as tape:
            loss = LOSS(y[:8], model(x[:8], training=True)) * scale
        grads = tape.gradient(loss, model.trainable_variables)
        want = {
            v.path: float(gradients.l2_norm(g / scale))
            for v, g in zip(model.trainable_variables, grads)
        }
        run = _fit(model, tmp_path / "run", optimizer=optimizer)
    finally:
        keras.config.set_dtype_policy("float32")
    assert run.record.config["loss_scale"] == "dynamic"
    assert run.record.config["dtype_policy"] == "mixed_float16"
    # The loss scale (2**15) is gone from the norms.
    _assert_close(run.metrics[0].grad_norms, want)


def test_mirrored_mixed_float16_norms_equal_single_device_norms(tmp_path):
    """Loss scale, all-reduce and float16 together. Each replica's float16
    backward pass rounds its own half of the batch, so the exact reference
    is the sum of the two halves' gradients taken on one device; the
    full-batch gradient differs from it by float16 rounding (measured 6e-4)."""
    x, y = _data()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = _mlp()
        scale = keras.optimizers.LossScaleOptimizer(
            keras.optimizers.SGD(0.1)
        ).initial_scale
        total = None
        for half in (slice(0, 4), slice(4, 8)):  # what each replica computes
            with tf.GradientTape() as tape:
                # Keras divides each replica's loss by the replica count.
                loss = LOSS(y[half], model(x[half], training=True)) / 2 * scale
            grads = tape.gradient(loss, model.trainable_variables)
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        want = {
            v.path: float(gradients.l2_norm(g / scale))
            for v, g in zip(model.trainable_variables, total)
        }
        single = _fit(
            _mlp(),
            tmp_path / "single",
            optimizer=keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1)),
        )
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        with strategy.scope():
            run = _fit(
                _mlp(),
                tmp_path / "mirrored",
                optimizer=keras.optimizers.LossScaleOptimizer(
                    keras.optimizers.SGD(0.1)
                ),
            )
    finally:
        keras.config.set_dtype_policy("float32")
    assert run.record.num_replicas == 2 and run.record.config["loss_scale"] == "dynamic"
    _assert_close(run.metrics[0].grad_norms, want)
    assert [r.step for r in run.metrics] == [r.step for r in single.metrics]
    for got, ref in zip(run.metrics, single.metrics):
        _assert_close(got.grad_norms, ref.grad_norms, 2e-3)


def test_fit_that_raises_marks_the_run_failed(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    checked = keras.layers.Lambda(lambda t: tf.debugging.check_numerics(t, "input"))
    model = keras.Model(inputs, _mlp()(checked(inputs)))
    x, y = _data()
    x[16:] = np.inf  # the third batch of 8 stops the step
    model.compile(optimizer=monitor.watch(keras.optimizers.SGD(0.1)), loss=LOSS)
    logger = monitor.GradientLogger(str(tmp_path), every_n_steps=1)
    with pytest.raises(tf.errors.InvalidArgumentError):
        model.fit(x, y, batch_size=8, shuffle=False, verbose=0, callbacks=[logger])
    run = load_run(str(tmp_path))
    assert run.status.state == "failed" and run.status.step == 2
    assert "InvalidArgumentError" in run.status.message
    assert "Inf" in run.status.message, run.status.message
    assert [r.step for r in run.metrics] == [1, 2]
    # The run directory is free again: the same logger continues it.
    model.fit(x[:16], y[:16], batch_size=8, verbose=0, callbacks=[logger])
    run = load_run(str(tmp_path))
    assert run.status.state == "completed"
    assert run.status.step == int(model.optimizer.iterations)


class UserResidual(keras.Model):
    """A subclassed user model: two dense layers and a skip."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.a = keras.layers.Dense(6, activation="tanh", name="a")
        self.b = keras.layers.Dense(6, activation="tanh", name="b")
        self.head = keras.layers.Dense(3, name="head")

    def call(self, x):
        h = self.a(x)
        return self.head(h + self.b(h))


class MixinResidual(monitor.GradientMonitorMixin, UserResidual):
    pass


def _cnn():
    """A small Keras CNN a user writes, not built by gradzoo."""
    inputs = keras.Input((6, 6, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(inputs)
    h = keras.layers.Conv2D(4, 3, activation="relu", padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h), name="user_cnn")


def test_user_cnn_gives_a_depth_profile_and_tensorboard(tmp_path):
    keras.utils.set_random_seed(0)
    model = _cnn()
    rng = np.random.RandomState(0)
    x, y = rng.randn(16, 6, 6, 1).astype("float32"), rng.randint(0, 3, 16)
    model.compile(optimizer=monitor.watch(keras.optimizers.Adam(1e-3)), loss=LOSS)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=2,
        verbose=0,
        validation_data=(x[:8], y[:8]),
        callbacks=[monitor.GradientLogger(str(tmp_path), every_n_steps=1)],
    )
    run = load_run(str(tmp_path))
    assert [r.step for r in run.metrics] == [1, 2, 3, 4]
    profile = gradients.gradient_profile(run.metrics[-1].grad_norms, run.depth_axis)
    assert len(profile.norms) == 3 and all(n > 0 for n in profile.norms)
    assert profile.verdict in ("healthy", "vanishing", "exploding")
    assert [e.step for e in run.evals] == [2, 4] and "loss" in run.evals[0].metrics
    table = compare.rows([run])
    assert table[1][2] == "completed" and table[1][6] != "-" and table[1][8] != "-"
    tags = set()
    for path in (tmp_path / schema.TB_DIR).iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(v.tag for v in event.summary.value)
    assert "gradients/global_norm" in tags
    assert f"gradient_norm/{model.trainable_variables[0].path}" in tags
    assert any(t.startswith("gradients/conv2d") for t in tags)  # a histogram


def test_sequential_subclassed_and_mixin(tmp_path):
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(5, activation="tanh"),
            keras.layers.Dense(3),
        ]
    )
    run = _fit(sequential, tmp_path / "seq", optimizer=keras.optimizers.SGD(0.1))
    assert len(run.metrics[0].grad_norms) == 4 and len(run.depth_axis) == 2

    x, y = _data()
    keras.utils.set_random_seed(0)
    watched = UserResidual(name="residual")
    watched(x[:1])
    mixin = MixinResidual(name="residual")
    mixin(x[:1])
    mixin.set_weights(watched.get_weights())
    a = _fit(watched, tmp_path / "watched", optimizer=keras.optimizers.SGD(0.1))
    x_, y_ = _data()
    mixin.compile(optimizer=keras.optimizers.SGD(0.1), loss=LOSS)
    mixin.fit(
        x_,
        y_,
        batch_size=8,
        shuffle=False,
        verbose=0,
        callbacks=[monitor.GradientLogger(str(tmp_path / "mixin"), every_n_steps=2)],
    )
    b = load_run(str(tmp_path / "mixin"))
    assert b.record.config["monitor"] == "train_step"
    assert [r.step for r in a.metrics] == [r.step for r in b.metrics] == [1, 2, 4]
    for got, ref in zip(b.metrics, a.metrics):
        _assert_close(got.grad_norms, ref.grad_norms)
        assert got.loss == pytest.approx(ref.loss, rel=1e-6)


def test_saved_model_loads_in_safe_mode_as_the_plain_optimizer(tmp_path):
    model = _mlp()
    _fit(model, tmp_path / "run", optimizer=keras.optimizers.Adam(1e-3))
    # A second fit continues the run directory (and reuses the trace).
    traces = model.train_function
    x, y = _data(16)
    logger = monitor.GradientLogger(str(tmp_path / "run"), every_n_steps=2)
    model.fit(x, y, batch_size=8, verbose=0, callbacks=[logger])
    assert model.train_function is traces
    assert [r.step for r in load_run(str(tmp_path / "run")).metrics] == [1, 2, 4, 6]
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded.optimizer) is keras.optimizers.Adam
    assert int(loaded.optimizer.iterations) == 6
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_refusals(tmp_path, monkeypatch):
    model = _mlp()
    with pytest.raises(ValueError, match="compile it with optimizer=monitor.watch"):
        _fit(model, tmp_path / "unwatched")
    with pytest.raises(ValueError, match="every_n_steps must be at least 1"):
        monitor.GradientLogger(str(tmp_path), every_n_steps=0)
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        monitor.watch(keras.optimizers.Adam())
    with pytest.raises(ValueError, match="needs the TensorFlow backend"):
        monitor.GradientLogger(str(tmp_path))
