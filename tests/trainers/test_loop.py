"""The train step and loop: loss goes down, accumulation, clipping, divergence,
bitwise resume, mirrored == default, early stopping, every optimizer."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from analysis import schema
from trainers import config as gz_config
from trainers import loop, runner


@pytest.fixture(scope="module")
def task():
    return zoo.load_task(
        "teacher", num_features=8, num_classes=4, num_train=256, num_eval=64
    )


def _model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    kwargs = {"depth": 3, "width": 16, "activation": "tanh", **kwargs}
    return zoo.get_model("plain_mlp", input_shape=(8,), num_outputs=4, **kwargs)


def _fixed_batches(task, n=32):
    x, y = task.x_train[:n], task.y_train[:n]
    return tf.data.Dataset.from_tensors((x, y)).repeat()


def _step(model, task, optimizer, **kwargs):
    return loop.TrainStep(
        model,
        task,
        optimizer,
        strategy=tf.distribute.get_strategy(),
        batch_size=kwargs.pop("batch_size", 32),
        **kwargs,
    )


def test_one_step_lowers_the_loss_on_a_fixed_batch(task):
    model = _model()
    step = _step(model, task, keras.optimizers.SGD(0.5))
    it = iter(_fixed_batches(task))
    first = step(it, with_norms=True)
    second = step(it, with_norms=False)
    assert float(second["loss"]) < float(first["loss"])
    assert first["grad_norms"].shape == (len(model.trainable_variables),)
    assert "grad_norms" not in second


def test_gradient_accumulation_equals_one_big_batch(task):
    big, acc = _model(), _model()
    _step(big, task, keras.optimizers.SGD(0.1), batch_size=32)(
        iter(_fixed_batches(task)), True
    )
    _step(acc, task, keras.optimizers.SGD(0.1), batch_size=8, grad_accum_steps=4)(
        iter(_fixed_batches(task)), True
    )
    for a, b in zip(big.trainable_variables, acc.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def _cosine(a, b):
    a = np.concatenate([np.ravel(t) for t in a])
    b = np.concatenate([np.ravel(t) for t in b])
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_global_clipping_keeps_direction_per_variable_clipping_changes_it():
    grads = [
        tf.constant([3.0, 4.0]),
        tf.constant([0.01, -0.02, 0.03]),
    ]  # norms 5 and ~0.04
    norm = tf.linalg.global_norm(grads)
    by_global = loop.clip_gradients(grads, "global_norm", 1.0, norm)
    assert abs(_cosine(grads, by_global) - 1.0) < 1e-6
    assert float(tf.linalg.global_norm(by_global)) == pytest.approx(1.0, rel=1e-6)
    by_norm = loop.clip_gradients(grads, "norm", 0.5)
    assert _cosine(grads, by_norm) < 0.999
    assert float(tf.norm(by_norm[0])) == pytest.approx(0.5)
    np.testing.assert_allclose(by_norm[1], grads[1])  # under the threshold: untouched
    by_value = loop.clip_gradients(grads, "value", 0.02)
    np.testing.assert_allclose(by_value[0], [0.02, 0.02])
    assert loop.clip_gradients(grads, "none", 0.0)[0] is grads[0]


def test_step_reports_norms_before_clipping(task):
    model = _model()
    out = _step(
        model,
        task,
        keras.optimizers.SGD(0.0001),
        clipping="global_norm",
        clip_threshold=1e-6,
    )(iter(_fixed_batches(task)), True)
    assert float(out["grad_global_norm"]) > 1e-3
    np.testing.assert_allclose(
        float(out["grad_global_norm"]),
        float(np.linalg.norm(out["grad_norms"])),
        rtol=1e-5,
    )


def _train(task, out_dir, model=None, optimizer=None, strategy=None, **kwargs):
    settings = {
        "num_steps": 20,
        "batch_size": 32,
        "log_every_steps": 5,
        "eval_every_steps": 10,
        "checkpoint_every_steps": 10,
        "seed": 3,
        **kwargs,
    }
    return loop.train(
        model or _model(),
        optimizer or keras.optimizers.Adam(1e-2),
        loop.Objective.of_task(task),
        task,
        loop.LoopConfig(**settings),
        str(out_dir),
        strategy=strategy,
    )


def _rows(path):
    return schema.read_jsonl(str(path))


def test_train_writes_the_run_directory(task, tmp_path):
    model = _model()
    result = _train(task, tmp_path, model=model)
    assert result.state == "completed" and result.step == 20
    status = json.load(open(tmp_path / "status.json"))
    assert status["state"] == "completed" and status["step"] == 20
    metrics, evals = _rows(tmp_path / "metrics.jsonl"), _rows(tmp_path / "eval.jsonl")
    assert [r["step"] for r in metrics] == [1, 5, 10, 15, 20]
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert set(metrics[0]["grad_norms"]) == {
        "block00_dense/kernel",
        "block00_dense/bias",
        "block01_dense/kernel",
        "block01_dense/bias",
        "block02_dense/kernel",
        "block02_dense/bias",
        "head_dense/kernel",
        "head_dense/bias",
    }
    assert evals[-1]["accuracy"] > evals[0]["accuracy"]
    saved = keras.saving.load_model(str(tmp_path / "model.keras"))
    # 8 inputs -> 16, then two 16 -> 16 layers, then a 4-way head; with biases.
    assert (
        saved.count_params()
        == model.count_params()
        == ((8 * 16 + 16) + 2 * (16 * 16 + 16) + (16 * 4 + 4))
    )
    np.testing.assert_array_equal(
        saved(task.x_eval[:8]).numpy(), model(task.x_eval[:8]).numpy()
    )
    assert os.listdir(tmp_path / "tb")


def test_resume_is_bitwise_identical(task, tmp_path):
    straight = _model()
    _train(task, tmp_path / "a", model=straight)
    _train(task, tmp_path / "b", num_steps=10)
    # A "new process": different init, fresh optimizer; the checkpoint wins.
    resumed = _model(seed=99)
    result = _train(task, tmp_path / "b", model=resumed)
    assert result.step == 20
    for a, b in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    steps = [r["step"] for r in _rows(tmp_path / "b" / "metrics.jsonl")]
    assert steps == [1, 5, 10, 15, 20]  # no duplicated rows after the resume


def test_a_completed_run_is_not_retrained(task, tmp_path):
    _train(task, tmp_path)
    before = open(tmp_path / "metrics.jsonl").read()
    result = _train(task, tmp_path)
    assert (
        result.state == "completed"
        and open(tmp_path / "metrics.jsonl").read() == before
    )


def _damage(path):
    with open(path, "r+b") as f:
        f.truncate(16)


def test_damaged_newest_checkpoint_falls_back_to_the_one_before(task, tmp_path):
    _train(task, tmp_path, num_steps=20)
    (tmp_path / "status.json").write_text('{"state": "running", "step": 20}')
    _damage(tmp_path / "ckpt" / "ckpt-20.data-00000-of-00001")
    result = _train(task, tmp_path, num_steps=20)
    assert result.state == "completed" and result.step == 20
    steps = [r["step"] for r in _rows(tmp_path / "eval.jsonl")]
    assert steps == [0, 10, 20]  # the rows after step 10 were replayed once


def test_no_restorable_checkpoint_is_a_clear_error_and_nothing_is_deleted(
    task, tmp_path
):
    _train(task, tmp_path, num_steps=10)
    for name in os.listdir(tmp_path / "ckpt"):
        if ".data-" in name:
            _damage(tmp_path / "ckpt" / name)
    (tmp_path / "status.json").write_text('{"state": "running", "step": 10}')
    files = sorted(os.listdir(tmp_path))
    with pytest.raises(schema.RunDirError, match="no checkpoint in .* can be restored"):
        _train(task, tmp_path, num_steps=20)
    assert sorted(os.listdir(tmp_path)) == files


def _assert_saved_state_is_good(path, task):
    saved = keras.saving.load_model(str(path / "model.keras"))
    assert all(np.isfinite(v.numpy()).all() for v in saved.weights)
    assert np.isfinite(loop.evaluate(saved, task)["loss"])


@pytest.mark.parametrize(
    "kwargs,lr",
    [
        ({"activation": "relu", "initializer": "he_normal"}, 1e12),
        ({"activation": "relu", "initializer": "he_normal", "norm": "batch"}, 1e30),
        ({"activation": "tanh"}, 3e38),  # finite gradients, overflowing weights
    ],
)
def test_divergence_is_recorded_and_the_saved_state_is_good(task, tmp_path, kwargs, lr):
    model = _model(**kwargs)
    result = _train(
        task,
        tmp_path,
        model=model,
        optimizer=keras.optimizers.SGD(lr),
        log_every_steps=1,
        checkpoint_every_steps=2,
    )
    assert result.state == "diverged"
    status = json.load(open(tmp_path / "status.json"))
    d = status["nonfinite"]
    assert status["state"] == "diverged" and "non-finite" in status["message"]
    assert status["step"] <= max(0, d["step"] - 1) and status["step"] % 2 == 0
    assert f"restored from the checkpoint at step {status['step']}" in status["message"]
    _assert_saved_state_is_good(tmp_path, task)
    # Running it again reports the divergence; it does not train on.
    again = _train(task, tmp_path, model=model, optimizer=keras.optimizers.SGD(lr))
    assert again.state == "diverged" and again.step == status["step"]


def test_mirrored_on_two_cpus_matches_default(task, tmp_path):
    cpus = tf.config.list_logical_devices("CPU")
    assert len(cpus) == 2, "tests/conftest.py splits the CPU in two"
    losses = {}
    for name in ("default", "mirrored"):
        strategy = runner.make_strategy(name)
        with strategy.scope():
            model = _model(seed=5)
            optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
        _train(
            task,
            tmp_path / name,
            model=model,
            optimizer=optimizer,
            strategy=strategy,
            log_every_steps=1,
            clipping="global_norm",
            clip_threshold=0.5,
        )
        losses[name] = [r["loss"] for r in _rows(tmp_path / name / "metrics.jsonl")]
    assert strategy.num_replicas_in_sync == 2 and len(losses["mirrored"]) == 20
    np.testing.assert_allclose(losses["mirrored"], losses["default"], atol=1e-5)


def test_early_stopping_stops_and_says_so(task, tmp_path):
    settings = dict(num_steps=100, eval_every_steps=5, early_stopping_patience=2)
    result = _train(task, tmp_path, optimizer=keras.optimizers.SGD(1e-12), **settings)
    assert result.state == "completed" and result.step == 10
    assert "early stop at step 10" in result.message
    assert json.load(open(tmp_path / "status.json"))["early_stopped"] is True
    again = _train(task, tmp_path, optimizer=keras.optimizers.SGD(1e-12), **settings)
    assert again.step == 10  # an early-stopped run is finished
    assert [r["step"] for r in _rows(tmp_path / "eval.jsonl")] == [0, 5, 10]


def test_early_stopping_rule():
    stop = loop.EarlyStopping("loss", higher_is_better=False, patience=2, min_delta=0.1)
    assert not stop.update(0, 1.0)
    assert not stop.update(1, 0.95)  # not better by more than min_delta
    assert stop.update(2, 0.5) is False and stop.best_step == 2
    assert not stop.update(3, 0.5)
    assert stop.update(4, 0.49)


@pytest.mark.parametrize("name", list(gz_config.OPTIMIZERS))
def test_every_optimizer_takes_a_step(name, task):
    config = gz_config.RunConfig(optimizer=name, learning_rate=0.05).resolved()
    model = _model()
    before = [v.numpy().copy() for v in model.trainable_variables]
    _step(model, task, gz_config.make_optimizer(config))(
        iter(_fixed_batches(task)), False
    )
    assert any(
        not np.array_equal(b, v.numpy())
        for b, v in zip(before, model.trainable_variables)
    )


def test_divergence_names_the_variables_even_when_value_clipping_hides_inf(task):
    model = _model()
    step = _step(
        model, task, keras.optimizers.SGD(0.1), clipping="value", clip_threshold=1.0
    )
    x = task.x_train[:32].copy()
    x[0, 0] = np.inf  # only the first layer's kernel gradient sees the inf
    it = iter(tf.data.Dataset.from_tensors((x, task.y_train[:32])).repeat())
    before = [v.numpy().copy() for v in model.trainable_variables]
    step(it, with_norms=True)
    d = step.divergence()
    assert d["step"] == 1 and "block00_dense/kernel" in d["variables"]
    for b, v in zip(before, model.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())  # the update was skipped


@pytest.mark.parametrize("strategy,jit", [("one_device", False), ("default", True)])
def test_one_device_strategy_and_xla_train_like_default(task, strategy, jit):
    results = []
    for name, jit_compile in (("default", False), (strategy, jit)):
        s = runner.make_strategy(name)
        with s.scope():
            model = _model(seed=2)
            optimizer = keras.optimizers.SGD(0.1)
        step = loop.TrainStep(
            model, task, optimizer, strategy=s, batch_size=32, jit_compile=jit_compile
        )
        it = iter(_fixed_batches(task))
        results.append([float(step(it, with_norms=True)["loss"]) for _ in range(3)])
    np.testing.assert_allclose(results[0], results[1], rtol=1e-5)
    assert results[0][2] < results[0][0]


def test_logged_learning_rate_is_the_one_the_update_used(task, tmp_path):
    schedule = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=4)
    _train(
        task,
        tmp_path,
        optimizer=keras.optimizers.SGD(schedule),
        num_steps=4,
        log_every_steps=1,
    )
    logged = [r["learning_rate"] for r in _rows(tmp_path / "metrics.jsonl")]
    np.testing.assert_allclose(
        logged, [float(schedule(i)) for i in range(4)], rtol=1e-6
    )


def test_huge_finite_gradient_is_clipped_not_called_divergence(task):
    model = _model(activation="relu", initializer="he_normal")
    step = _step(
        model,
        task,
        keras.optimizers.SGD(1e-3),
        clipping="global_norm",
        clip_threshold=1.0,
    )
    x = task.x_train[:32] * 1e19
    out = step(
        iter(tf.data.Dataset.from_tensors((x, task.y_train[:32])).repeat()), True
    )
    assert np.isfinite(float(out["loss"])) and float(out["grad_global_norm"]) > 1e19
    assert step.divergence() is None


def test_resumed_rows_say_how_many_steps_they_average(task, tmp_path):
    _train(
        task, tmp_path / "a", num_steps=7, log_every_steps=5, checkpoint_every_steps=7
    )
    _train(
        task, tmp_path / "a", num_steps=20, log_every_steps=5, checkpoint_every_steps=7
    )
    rows = {
        r["step"]: r["window_steps"] for r in _rows(tmp_path / "a" / "metrics.jsonl")
    }
    assert rows == {1: 1, 5: 4, 7: 2, 10: 3, 15: 5, 20: 5}


def test_overflowed_weights_are_caught_at_checkpoints(task, tmp_path):
    model = _model()
    assert loop._nonfinite_weights(model, 5) is None
    model.get_layer("block01_dense").bias.assign(np.full(16, np.inf, np.float32))
    d = loop._nonfinite_weights(model, 5)
    assert d == {
        "step": 5,
        "loss_finite": True,
        "variables": [],
        "weights": ["block01_dense/bias"],
    }
    assert "weights after step 5 (block01_dense/bias)" in loop._describe_divergence(
        d, 4
    )


def test_logging_cadence_does_not_change_the_training(task, tmp_path, monkeypatch):
    # Logging steps measure every variable's norm, and a short run steps with
    # that variant throughout; the update (here clipped by the global norm,
    # which is active) must be the same bit for bit as the other variant's,
    # which the second run (not counted as short) takes between its logs.
    models = []
    for every, short in ((1, loop.SHORT_RUN_STEPS), (1000, 0)):
        monkeypatch.setattr(loop, "SHORT_RUN_STEPS", short)
        model = _model()
        _train(
            task,
            tmp_path / str(every),
            model=model,
            log_every_steps=every,
            clipping="global_norm",
            clip_threshold=0.1,
        )
        models.append(model)
    for a, b in zip(*(m.weights for m in models)):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


class _Reconstruction:
    """Data for an autoencoder phase: the task's inputs as the targets."""

    def __init__(self, task):
        self.task = task

    def train_dataset(self, batch_size, *, seed, start_step):
        ds = self.task.train_dataset(batch_size, seed=seed, start_step=start_step)
        return ds.map(lambda x, y: (x, x))

    def eval_dataset(self, batch_size):
        return self.task.eval_dataset(batch_size).map(lambda x, y: (x, x))


def _squared_error(y, outputs):
    return tf.reduce_mean(tf.square(outputs - y), axis=-1)


RECONSTRUCTION = loop.Objective(
    loss=_squared_error,
    metrics=lambda y, outputs: {"mse": _squared_error(y, outputs)},
    main_metric="mse",
    higher_is_better=False,
)


def _autoencoder(seed):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8,))
    code = keras.layers.Dense(4, activation="tanh", name="block00_dense")(inputs)
    outputs = keras.layers.Dense(8, name="decoder_dense")(code)
    return keras.Model(inputs, outputs, name="autoencoder")


def test_a_phase_with_a_custom_objective_reuses_the_loop(task, tmp_path):
    """The seam a second training phase uses: a reconstruction objective on
    other data, through the same compiled step, checkpoints and rows."""
    config = loop.LoopConfig(
        num_steps=20,
        batch_size=32,
        log_every_steps=5,
        eval_every_steps=10,
        checkpoint_every_steps=10,
    )
    straight = _autoencoder(0)
    result = loop.train(
        straight,
        keras.optimizers.Adam(1e-2),
        RECONSTRUCTION,
        _Reconstruction(task),
        config,
        str(tmp_path / "a"),
    )
    assert result.state == "completed" and result.step == 20
    evals = _rows(tmp_path / "a" / "eval.jsonl")
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert evals[-1]["mse"] < 0.8 * evals[0]["mse"]  # measured: 1.32 -> 0.86
    metrics = _rows(tmp_path / "a" / "metrics.jsonl")
    assert set(metrics[-1]["grad_norms"]) == {
        v.path for v in straight.trainable_variables
    }
    assert metrics[-1]["mse"] == pytest.approx(metrics[-1]["loss"])
    # Interrupted after 10 steps and resumed by a "new process": bitwise equal.
    loop.train(
        _autoencoder(0),
        keras.optimizers.Adam(1e-2),
        RECONSTRUCTION,
        _Reconstruction(task),
        dataclasses.replace(config, num_steps=10),
        str(tmp_path / "b"),
    )
    resumed = _autoencoder(7)
    loop.train(
        resumed,
        keras.optimizers.Adam(1e-2),
        RECONSTRUCTION,
        _Reconstruction(task),
        config,
        str(tmp_path / "b"),
    )
    for x, y in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
