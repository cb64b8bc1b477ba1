"""Pretraining runs: every phase through the loop, a readable run directory
per phase, the frozen layers untouched, resumes bitwise from a kill in
phase 1 and in phase 2."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from analysis import compare, rundir
from trainers import loop, pretraining, runner
from trainers.config import PretrainConfig, RunConfig

TEACHER = {"num_features": 8, "num_classes": 4, "num_train": 256, "num_eval": 64}


def _config(**kwargs):
    run = RunConfig(
        model="plain_mlp",
        model_kwargs={"depth": 2, "width": 16, "activation": "sigmoid"},
        task="teacher",
        task_kwargs=TEACHER,
        optimizer="sgd",
        learning_rate=0.5,
        batch_size=32,
        num_steps=10,
        log_every_steps=4,
        eval_every_steps=10,
        checkpoint_every_steps=5,
        seed=1,
    )
    settings = {
        "steps_per_layer": 10,
        "learning_rate": 0.5,
        "denoising": 0.25,
        **kwargs,
    }
    return PretrainConfig(run=run, **settings)


def _run(config, path):
    built = pretraining.build(config, str(path))
    result = built.train()
    return result, built.network


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """One uninterrupted run, shared: (its directory, result, network)."""
    path = tmp_path_factory.mktemp("straight")
    result, network = _run(_config(), path)
    return path, result, network


def test_each_phase_is_a_run_directory_and_the_loss_falls(straight):
    tmp_path, result, network = straight
    assert result.state == "completed" and result.step == 10
    top = rundir.load_run(str(tmp_path))
    assert top.status.state == "completed"
    assert top.record.pretraining["steps_per_layer"] == 10
    assert top.record.pretraining["denoising"] == 0.25
    for i in range(2):
        phase = rundir.load_run(str(tmp_path / f"pretrain_block0{i}"))
        assert phase.record.phase["layer"] == i
        assert phase.record.config["num_steps"] == 10
        assert [r.step for r in phase.metrics] == [1, 4, 8, 10]
        assert set(phase.metrics[0].grad_norms) == {
            f"block0{i}_dense/kernel",
            f"block0{i}_dense/bias",
            "decoder_dense/kernel",
            "decoder_dense/bias",
        }
        first, last = phase.evals[0], phase.evals[-1]
        assert last.metrics["reconstruction_mse"] < first.metrics["reconstruction_mse"]
    finetune = rundir.load_run(str(tmp_path / "finetune"))
    assert finetune.record.phase["init"] == "pretrained"
    assert finetune.record.config == top.record.config
    assert len(finetune.metrics[0].grad_norms) == len(network.trainable_variables)
    table = compare.rows(
        [finetune, rundir.load_run(str(tmp_path / "pretrain_block00"))]
    )
    assert [row[1] for row in table[1:]] == [
        "plain_mlp (pretrained)",
        "plain_mlp (pretrain_block00)",
    ]
    # The network ends where the fine-tuning phase saved it.
    saved = keras.saving.load_model(str(tmp_path / "finetune" / "model.keras"))
    for a, b in zip(saved.weights, network.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_phase_leaves_the_layers_below_bitwise_unchanged():
    config = _config(tied_weights=True).resolved()
    task = zoo.load_task("teacher", **TEACHER)
    keras.utils.set_random_seed(0)
    net = zoo.get_model(
        "plain_mlp", input_shape=(8,), num_outputs=4, **config.run.model_kwargs
    )
    ae = zoo.pretraining.layer_autoencoder(net, 1, tied_weights=True, denoising=0.5)
    before = {v.path: v.numpy().copy() for v in net.weights}
    step = loop.TrainStep(
        ae,
        pretraining.RECONSTRUCTION,
        keras.optimizers.SGD(0.5),
        strategy=tf.distribute.get_strategy(),
        batch_size=32,
    )
    it = iter(task.train_dataset(32, seed=0))
    for _ in range(5):
        step(it, with_norms=False)
    for v in net.weights:
        same = np.array_equal(before[v.path], v.numpy())
        assert same != v.path.startswith("block01_dense"), v.path


def _interrupt_at(monkeypatch, phase, step):
    """Makes the loop raise Ctrl-C at `step` of the phase directory `phase`."""
    log = loop._log_metrics

    def interrupted(p, at, window, seconds):
        if p.run_dir.path.endswith(phase) and at == step:
            raise KeyboardInterrupt("test")
        log(p, at, window, seconds)

    monkeypatch.setattr(loop, "_log_metrics", interrupted)


@pytest.mark.parametrize("phase", ["pretrain_block01", "finetune"])
def test_a_kill_in_either_phase_resumes_bitwise(straight, tmp_path, monkeypatch, phase):
    straight = straight[2]
    with monkeypatch.context() as m:
        _interrupt_at(m, phase, 8)
        with pytest.raises(KeyboardInterrupt):
            _run(_config(), tmp_path / "b")
    top = rundir.load_run(str(tmp_path / "b"))
    assert top.status.state == "failed" and phase in top.status.message
    assert rundir.load_run(str(tmp_path / "b" / phase)).status.step == 5
    keras.utils.set_random_seed(99)  # a "new process": the checkpoints win
    result, resumed = _run(_config(), tmp_path / "b")
    assert result.state == "completed"
    for x, y in zip(straight.weights, resumed.weights):
        np.testing.assert_array_equal(x.numpy(), y.numpy())
    rows = rundir.load_run(str(tmp_path / "b" / phase)).metrics
    assert [r.step for r in rows] == [1, 4, 8, 10]


def test_a_different_pretraining_config_is_refused(tmp_path):
    built = pretraining.build(_config(steps_per_layer=2), str(tmp_path))
    built.release()  # config.json is written; no training is needed
    with pytest.raises(ValueError, match="different config .*steps_per_layer"):
        pretraining.build(_config(steps_per_layer=3).resolved(), str(tmp_path))


def test_the_network_starts_where_a_run_from_scratch_starts(tmp_path):
    config = _config().resolved()
    built = pretraining.build(config, str(tmp_path / "p"))
    built.release()
    scratch = runner.build_run(config.run, str(tmp_path / "s"))
    scratch.release()
    for a, b in zip(built.network.weights, scratch.model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
