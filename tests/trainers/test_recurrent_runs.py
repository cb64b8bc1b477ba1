"""Recurrent models on sequence tasks through the trainer, as a user runs them.

Bad input is one line and exit 2; tiny runs write the gradient through time;
clipping keeps (global norm) or bends (per-variable norm) a recurrent
model's gradient direction.
"""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from analysis import cli
from analysis import rundir as analysis_rundir
from tests.helpers import assert_one_line_error, run_cli
from trainers import loop

TINY_SEQUENCE = [
    "--units=4",
    "--sequence_length=6",
    "--num_train=64",
    "--num_eval=16",
    "--batch_size=16",
    "--num_steps=6",
    "--log_every_steps=3",
    "--eval_every_steps=3",
    "--checkpoint_every_steps=3",
]


@pytest.mark.parametrize(
    "args,needles",
    [
        (
            ["--model=lstm", "--task=adding", "--sequence_length=1"],
            ["adding: sequence_length must be between 2 and 1000", "=1"],
        ),
        (
            ["--model=gru", "--task=temporal_order", "--sequence_length=1001"],
            ["temporal_order: sequence_length must be between 4 and 1000"],
        ),
        (
            ["--model=lstm", "--task=copy_memory", "--sequence_length=15"],
            ["copy_memory: sequence_length=15", "copy delay"],
        ),
        (
            ["--model=vanilla_rnn", "--task=adding", "--spectral_radius=0"],
            ["spectral_radius must be positive and finite"],
        ),
        (
            ["--model=vanilla_rnn", "--task=adding", "--spectral_radius=-1.5"],
            ["spectral_radius", "-1.5"],
        ),
        (
            ["--model=lstm", "--task=digits"],
            ["Model 'lstm' takes sequence inputs", "task 'digits' gives image"],
        ),
        (
            ["--model=plain_mlp", "--task=adding"],
            ["Model 'plain_mlp' takes vector or image", "'adding' gives sequence"],
        ),
        (
            ["--model=plain_mlp", "--task=digits", "--sequence_length=50"],
            ["--sequence_length does not apply to --task=digits"],
        ),
        (
            ["--model=plain_mlp", "--task=digits", "--units=8"],
            ["--units does not apply to --model=plain_mlp"],
        ),
        (
            ["--model=lstm", "--task=adding", "--activation=relu"],
            ["--activation does not apply to --model=lstm"],
        ),
        (
            ["--model=plain_mlp", "--log_gradient_through_time"],
            ["log_gradient_through_time needs a recurrent model"],
        ),
        (["--recurrent_initializer=zeros"], ["--recurrent_initializer"]),
        (["--model=gru", "--task=adding", "--norm=batch"], ["Unknown norm 'batch'"]),
    ],
)
def test_bad_sequence_input_is_one_line_and_exit_2(
    capsys, tmp_path, data_dir, args, needles
):
    code, _, err = run_cli(
        capsys, f"--output_dir={tmp_path / 'run'}", f"--data_dir={data_dir}", *args
    )
    assert_one_line_error(code, err, *needles)
    assert not os.path.exists(tmp_path / "run")


def test_lstm_on_adding_logs_gradient_through_time(
    capsys, tmp_path, data_dir, monkeypatch
):
    monkeypatch.delenv(cli.BFC_ENV, raising=False)
    run = tmp_path / "run"
    args = [
        "--model=lstm",
        "--task=adding",
        "--log_gradient_through_time",
        f"--output_dir={run}",
        f"--data_dir={data_dir}",
        *TINY_SEQUENCE,
    ]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in out
    assert "mse" in out and "(baseline" in out
    # The LSTM's declared allocator was asked for (this test process started
    # TensorFlow long before: tests/test_startup.py sees it take effect).
    assert os.environ[cli.BFC_ENV] == "true"

    config = json.load(open(run / "config.json"))
    assert config["task_kwargs"] == {
        "sequence_length": 6,
        "num_train": 64,
        "num_eval": 16,
        "data_seed": 0,
    }
    assert config["task_info"]["main_metric"] == "mse"
    assert config["model_kwargs"]["unit_forget_bias"] is True

    loaded = analysis_rundir.load_run(str(run))
    rows = loaded.gradient_through_time
    assert [r.step for r in rows] == [0, 1, 3, 6]  # init, then logging steps
    for r in rows:
        assert r.layer == "block00_rnn"
        assert len(r.input_grad_norms) == len(r.state_grad_norms) == 6
        assert r.input_ratio == pytest.approx(
            r.input_grad_norms[0] / r.input_grad_norms[-1]
        )
    assert set(loaded.evals[-1].metrics) >= {"loss", "mse"}

    # flags.txt replays the task's and the model's flags: the same run.
    flags_txt = (run / "flags.txt").read_text()
    assert "--sequence_length=6" in flags_txt and "--units=4" in flags_txt
    assert "--log_gradient_through_time" in flags_txt
    saved = (run / "config.json").read_bytes()
    code, out, _ = run_cli(
        capsys, f"--flagfile={run / 'flags.txt'}", f"--output_dir={run}"
    )
    assert code == 0 and "completed at step 6" in out
    assert (run / "config.json").read_bytes() == saved


def test_gru_on_copy_memory_predicts_every_step(capsys, tmp_path, data_dir):
    run = tmp_path / "run"
    args = [
        "--model=gru",
        "--task=copy_memory",
        f"--output_dir={run}",
        f"--data_dir={data_dir}",
        *TINY_SEQUENCE,
        "--sequence_length=22",
    ]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0, out
    config = json.load(open(run / "config.json"))
    assert config["task_info"]["output_per_step"] is True
    baseline = config["task_info"]["baselines"]["loss"]
    assert baseline == pytest.approx(10 * np.log(8) / 22, rel=0.2)
    model = keras.saving.load_model(run / "model.keras")
    assert model.output_shape == (None, 22, 9)


def _recurrent_gradients():
    """A tiny tanh RNN's gradient, whose variables have very unequal norms."""
    keras.utils.set_random_seed(0)
    model = zoo.get_model(
        "vanilla_rnn", input_shape=(8, 2), num_outputs=1, units=4, spectral_radius=1.2
    )
    x = np.random.default_rng(0).normal(size=(16, 8, 2)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(x) - 1.0))
    return tape.gradient(loss, model.trainable_variables)


def _cosine(a, b):
    a = np.concatenate([np.ravel(g) for g in a]).astype(np.float64)
    b = np.concatenate([np.ravel(g) for g in b]).astype(np.float64)
    return a @ b / (np.linalg.norm(a) * np.linalg.norm(b))


def test_global_norm_clipping_keeps_a_recurrent_gradients_direction():
    grads = _recurrent_gradients()
    norms = [float(tf.norm(g)) for g in grads]
    threshold = min(norms) / 2  # every variable is clipped, by unequal factors
    assert max(norms) / min(norms) > 2

    clipped = loop.clip_gradients(grads, "global_norm", threshold)
    assert abs(_cosine(grads, clipped) - 1) < 1e-6
    total = np.sqrt(sum(float(tf.reduce_sum(tf.square(g))) for g in clipped))
    assert total == pytest.approx(threshold, rel=1e-5)

    per_variable = loop.clip_gradients(grads, "norm", threshold)
    assert _cosine(grads, per_variable) < 1 - 1e-3  # the direction changed
    by_value = loop.clip_gradients(grads, "value", threshold / 10)
    assert _cosine(grads, by_value) < 1 - 1e-3


def test_sequence_tasks_train_with_their_recipe_unless_told_otherwise(
    capsys, tmp_path, data_dir
):
    def config(*args):
        run = tmp_path / f"run{len(list(tmp_path.iterdir()))}"
        code, out, err = run_cli(
            capsys,
            "--model=gru",
            "--task=adding",
            f"--output_dir={run}",
            f"--data_dir={data_dir}",
            *TINY_SEQUENCE,
            "--num_steps=1",
            *args,
        )
        assert code == 0, err
        c = json.load(open(run / "config.json"))
        flags_txt = (run / "flags.txt").read_text()
        return c, flags_txt

    c, flags_txt = config()  # TINY_SEQUENCE gives --batch_size=16
    assert (c["optimizer"], c["learning_rate"], c["batch_size"]) == ("adam", 1e-3, 16)
    assert (c["clipping"], c["clip_threshold"]) == ("global_norm", 1.0)
    assert "--norecipe" in flags_txt and "--clip_global_norm=1.0" in flags_txt
    c, _ = config("--optimizer=sgd", "--clip_value=0.5")
    assert (c["optimizer"], c["learning_rate"]) == ("sgd", 0.01)
    assert (c["clipping"], c["clip_threshold"]) == ("value", 0.5)
    c, flags_txt = config("--norecipe")
    assert (c["optimizer"], c["clipping"]) == ("sgd", "none")
    assert "clip" not in flags_txt


def test_an_error_about_a_recipe_setting_says_it_came_from_the_recipe(
    capsys, tmp_path, data_dir
):
    code, _, err = run_cli(
        capsys,
        "--model=lstm",
        "--task=adding",
        "--sequence_length=6",
        "--num_train=32",
        "--num_eval=16",
        f"--output_dir={tmp_path / 'run'}",
        f"--data_dir={data_dir}",
    )
    assert_one_line_error(code, err, "64", "recipe set", "--batch_size=64")
