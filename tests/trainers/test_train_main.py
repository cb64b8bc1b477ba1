"""The absl main as a user meets it: bad input is one line and exit 2, a
diverged run exits 3, flags.txt replays the run, TensorBoard reads tb/."""

import json
import os
import subprocess
import sys

import pytest

from analysis import cli
from tests.helpers import assert_one_line_error, run_cli

TINY = [
    "--depth=3",
    "--width=8",
    "--num_steps=20",
    "--log_every_steps=5",
    "--eval_every_steps=10",
    "--checkpoint_every_steps=10",
    "--batch_size=32",
]


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--model=mlp"], ["--model=mlp", "plain_mlp"]),
        (["--task=imagenet"], ["--task=imagenet"]),
        (["--optimizer=lion"], ["--optimizer=lion", "adamw"]),
        (["--activation=swish"], ["--activation=swish"]),
        (["--initializer=zeros"], ["--initializer=zeros"]),
        (["--depth=0"], ["--depth=0"]),
        (["--depth=-2"], ["--depth=-2"]),
        (["--learning_rate=0"], ["--learning_rate=0", "must be > 0"]),
        (["--learning_rate=-0.1"], ["--learning_rate=-0.1"]),
        (["--batch_size=0"], ["--batch_size=0"]),
        (["--clip_norm=0"], ["--clip_norm=0"]),
        (["--clip_value=-1"], ["--clip_value=-1"]),
        (["--clip_norm=1", "--clip_global_norm=1"], ["at most one of --clip_value"]),
        (["--num_steps=ten"], ["--num_steps"]),
        (["--learning_rate=1e39"], ["learning_rate must be positive and finite"]),
        (["--optimizer=adam", "--beta_1=1.0"], ["beta_1 must be in [0, 1)"]),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(capsys, tmp_path, args, needles):
    code, _, err = run_cli(capsys, f"--output_dir={tmp_path / 'run'}", *args)
    assert_one_line_error(code, err, *needles)
    assert not os.path.exists(tmp_path / "run")


def test_bad_settings_found_after_parsing_are_one_line_too(capsys, tmp_path, data_dir):
    out = f"--output_dir={tmp_path / 'run'}"
    code, _, err = run_cli(
        capsys, out, "--optimizer=sgd", "--beta_1=0.9", f"--data_dir={data_dir}"
    )
    assert_one_line_error(code, err, "Optimizer 'sgd' takes no beta_1")
    code, _, err = run_cli(
        capsys, out, "--task=mnist", f"--data_dir={tmp_path / 'empty'}"
    )
    assert_one_line_error(code, err, "mnist", "never downloads")
    a_file = tmp_path / "file"
    a_file.write_text("keep me")
    code, _, err = run_cli(
        capsys, f"--output_dir={a_file}", f"--data_dir={data_dir}", *TINY
    )
    assert_one_line_error(code, err, "is not a directory")
    code, _, err = run_cli(
        capsys, f"--output_dir={a_file / 'x'}", f"--data_dir={data_dir}", *TINY
    )
    assert_one_line_error(code, err, "not writable")
    assert a_file.read_text() == "keep me"


def test_train_resume_refuse_overwrite_and_replay(capsys, tmp_path, data_dir):
    run = tmp_path / "run"
    args = [f"--output_dir={run}", f"--data_dir={data_dir}", *TINY]
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and "completed at step 20" in out
    saved = {
        name: (run / name).read_bytes() for name in ("config.json", "metrics.jsonl")
    }

    # The same command again: nothing to do, nothing rewritten.
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and (run / "metrics.jsonl").read_bytes() == saved["metrics.jsonl"]
    # flags.txt replays the resolved run exactly (so it is a resume, too).
    code, out, _ = run_cli(
        capsys, f"--flagfile={run / 'flags.txt'}", f"--output_dir={run}"
    )
    assert code == 0 and (run / "config.json").read_bytes() == saved["config.json"]

    code, _, err = run_cli(capsys, *args, "--learning_rate=0.5")
    assert_one_line_error(
        code, err, "different config", "learning_rate: 0.01 -> 0.5", "--overwrite"
    )
    assert (run / "config.json").read_bytes() == saved["config.json"]
    code, out, _ = run_cli(capsys, *args, "--learning_rate=0.5", "--overwrite")
    assert code == 0 and json.load(open(run / "config.json"))["learning_rate"] == 0.5


def test_unrestorable_checkpoints_via_cli(capsys, tmp_path, data_dir):
    run = tmp_path / "run"
    args = [f"--output_dir={run}", f"--data_dir={data_dir}", *TINY]
    assert run_cli(capsys, *args)[0] == 0
    (run / "status.json").write_text('{"state": "running", "step": 10}')
    for index in (run / "ckpt").glob("*.index"):
        index.write_bytes(b"not a checkpoint")
    before = sorted(os.listdir(run))
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, "can be restored", "--overwrite")
    assert sorted(os.listdir(run)) == before
    code, out, _ = run_cli(capsys, *args, "--overwrite")  # the way out it names
    assert code == 0 and "completed at step 20" in out


def test_diverged_run_exits_3_with_intact_status(capsys, tmp_path, data_dir):
    run = tmp_path / "run"
    code, out, _ = run_cli(
        capsys,
        f"--output_dir={run}",
        f"--data_dir={data_dir}",
        *TINY,
        "--activation=relu",
        "--initializer=he_normal",
        "--learning_rate=1e12",
        "--log_every_steps=1",
    )
    assert code == cli.EXIT_DIVERGED and "diverged" in out
    status = json.load(open(run / "status.json"))
    assert status["state"] == "diverged" and status["nonfinite"]["step"] >= 1


def test_real_command_line_run(tmp_path, data_dir):
    """The real process: progress line, run directory, TensorBoard-readable."""
    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("TF_CPU_ALLOCATOR_USE_BFC", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "trainers.train",
            f"--output_dir={run}",
            f"--data_dir={data_dir}",
            "--model=residual_mlp",
            *TINY,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (
        "step 20/20" in proc.stderr
        and "steps/s" in proc.stderr
        and "ETA" in proc.stderr
        # The MLP's declared allocator (zoo/registry.py), as TensorFlow reports it.
        and "TensorFlow's CPU allocator: default" in proc.stderr
    )
    assert sorted(os.listdir(run)) == sorted(
        [
            "flags.txt",
            "config.json",
            "status.json",
            "metrics.jsonl",
            "eval.jsonl",
            "ckpt",
            "tb",
            "model.keras",
            "log.txt",
        ]
    )
    from tensorboard.backend.event_processing import event_accumulator

    acc = event_accumulator.EventAccumulator(str(run / "tb"))
    acc.Reload()
    tags = acc.Tags()["tensors"]
    assert {"train/loss", "eval/accuracy", "grad_norm/block00_dense/kernel"} <= set(
        tags
    )
    assert [e.step for e in acc.Tensors("eval/accuracy")] == [0, 10, 20]


def test_sigterm_leaves_a_resumable_failed_status(tmp_path, data_dir):
    import signal
    import time

    run = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainers.train",
            f"--output_dir={run}",
            f"--data_dir={data_dir}",
            "--depth=3",
            "--width=8",
            "--num_steps=10000000",
            "--log_every_steps=50",
            "--checkpoint_every_steps=50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.time() + 120
        while (
            not (run / "metrics.jsonl").exists()
            or len((run / "metrics.jsonl").read_text().splitlines()) < 2
        ):
            assert time.time() < deadline and proc.poll() is None, "run did not start"
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == cli.EXIT_INTERRUPTED, err[-2000:]
    assert "Traceback" not in err and "interrupted:" in err
    status = json.load(open(run / "status.json"))
    assert (
        status["state"] == "failed"
        and "run the same command to resume" in status["message"]
    )


def test_exit_now_after_tensorflow_keeps_the_code_and_the_streams(tmp_path):
    # The mains a suite starts per run skip the interpreter's teardown once
    # TensorFlow is loaded; what was printed or logged must still be out.
    script = (
        "import sys, tensorflow, logging\n"
        "from analysis import cli\n"
        "print('printed')\n"
        "logging.getLogger().addHandler(logging.FileHandler(sys.argv[1]))\n"
        "logging.getLogger().warning('logged')\n"
        "cli.exit_now(3)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    log = tmp_path / "log.txt"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(log)],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "2"},
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert proc.stdout == "printed\n" and log.read_text() == "logged\n"


@pytest.mark.parametrize(
    "code, exits, says", [(None, 0, ""), (2, 2, ""), ("why", 1, "why\n")]
)
def test_exit_now_takes_what_system_exit_carries(
    monkeypatch, capsys, code, exits, says
):
    import tensorflow  # noqa: F401  (this process has it; exit_now checks)

    def _exit(n):
        raise RuntimeError(n)

    monkeypatch.setattr(cli.os, "_exit", _exit)
    with pytest.raises(RuntimeError) as e:
        cli.exit_now(code)
    assert e.value.args == (exits,) and capsys.readouterr().err == says
