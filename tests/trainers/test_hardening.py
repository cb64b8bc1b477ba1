"""Faults and bad input a new user met, each ending in one clear line with
nothing lost (the table in the hardening issue's closing note)."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from analysis import compare, schema
from analysis.rundir import load_run
from tests.helpers import assert_one_line_error, run_cli, run_main

TINY = [
    "--depth=3",
    "--width=8",
    "--num_steps=6",
    "--log_every_steps=1",
    "--eval_every_steps=3",
    "--checkpoint_every_steps=3",
    "--batch_size=32",
]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def made_run(tmp_path_factory, data_dir):
    """A completed 6-step run, trained once for this module's tests."""
    path = tmp_path_factory.mktemp("made") / "run"
    assert run_main(f"--output_dir={path}", f"--data_dir={data_dir}", *TINY) == 0
    return path


@pytest.fixture
def run(tmp_path, data_dir, made_run):
    """A copy of that run (times kept) and the arguments that would make it."""
    path = tmp_path / "run"
    shutil.copytree(made_run, path)
    return path, [f"--output_dir={path}", f"--data_dir={data_dir}", *TINY]


def _as_interrupted_at_3(path):
    """Leaves the run as a SIGTERM after step 4 would: status failed at 3,
    the checkpoint of step 6 gone, rows up to 4."""
    for name in os.listdir(path / "ckpt"):
        if name.startswith("ckpt-6"):
            os.remove(path / "ckpt" / name)
    stamp = os.path.getmtime(path / "ckpt" / "ckpt-3.index")
    (path / "ckpt" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n'
        f"all_model_checkpoint_timestamps: {stamp}\n"
    )
    os.remove(path / "model.keras")
    status = schema.Status("failed", 3, "interrupted at step 4; resume from 3")
    schema.write_json(str(path / "status.json"), status.to_json())


def _files(path):
    return {
        str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    "content", ["garbage{", "", "{}", "[1, 2]", '{"state": "running"}']
)
def test_a_damaged_status_json_is_resumed_from_the_checkpoints(capsys, run, content):
    path, args = run
    _as_interrupted_at_3(path)
    (path / "status.json").write_text(content)
    kept = schema.read_jsonl(str(path / "metrics.jsonl"))[:3]
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in out, err
    assert [r.step for r in load_run(str(path)).metrics] == [1, 2, 3, 4, 5, 6]
    assert schema.read_jsonl(str(path / "metrics.jsonl"))[:3] == kept  # resumed


def test_a_null_main_metric_in_eval_rows_is_read_as_missing(capsys, run):
    path, args = run
    _as_interrupted_at_3(path)
    rows = schema.read_jsonl(str(path / "eval.jsonl"))
    rows[1]["accuracy"] = None  # what the writer records for a NaN
    (path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = run_cli(capsys, *args, "--early_stopping_patience=5")
    assert_one_line_error(code, err, "different config")  # patience is config
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in out, err


@pytest.mark.parametrize(
    "damage,needle",
    [
        (
            lambda p: p.joinpath("metrics.jsonl").write_text('{"loss": 1}\n'),
            "integer step",
        ),
        (
            lambda p: p.joinpath("metrics.jsonl").write_bytes(
                b'{"step": 1}\n\xff\xfe\n'
            ),
            "not UTF-8",
        ),
        (
            lambda p: (os.remove(p / "eval.jsonl"), os.mkdir(p / "eval.jsonl")),
            "should be a file and is a directory",
        ),
        (
            lambda p: (shutil.rmtree(p / "ckpt"), p.joinpath("ckpt").write_text("x")),
            "should be a directory",
        ),
        (
            lambda p: p.joinpath("metrics.jsonl").write_text(
                '{"step": 1, "grad_norms": [1, 2]}\n'
            ),
            "grad_norms",
        ),
    ],
)
def test_damaged_files_are_refused_before_anything_is_touched(
    capsys, run, damage, needle
):
    path, args = run
    _as_interrupted_at_3(path)
    damage(path)
    before = _files(path)
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, needle)
    assert _files(path) == before


@pytest.mark.parametrize("how", ["deleted", "garbled"])
def test_a_lost_checkpoint_index_is_recovered_not_restarted(capsys, run, how):
    path, args = run
    _as_interrupted_at_3(path)
    index = path / "ckpt" / "checkpoint"
    if how == "deleted":
        index.unlink()
    else:
        index.write_text("this is not a checkpoint state {{{")
    (path / "ckpt" / "ckpt-0_temp").mkdir()  # a kill during the first save
    kept = schema.read_jsonl(str(path / "metrics.jsonl"))[:3]
    code, out, err = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in out, err
    # Resumed from step 3, not restarted: the rows up to it are the old ones.
    rows = schema.read_jsonl(str(path / "metrics.jsonl"))
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and rows[:3] == kept
    assert "recovered the index" in (path / "log.txt").read_text()
    assert not (path / "ckpt" / "ckpt-0_temp").exists()


def test_a_completed_run_missing_model_keras_gets_it_back(capsys, run):
    path, args = run
    os.remove(path / "model.keras")
    code, out, _ = run_cli(capsys, *args)
    assert code == 0 and (path / "model.keras").exists()


def test_tensorboard_shows_each_step_once_after_a_resume(capsys, run):
    from tensorboard.backend.event_processing import event_accumulator

    path, args = run
    _as_interrupted_at_3(path)
    assert run_cli(capsys, *args)[0] == 0
    acc = event_accumulator.EventAccumulator(str(path / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Tensors("train/loss")] == [1, 2, 3, 4, 5, 6]
    assert [e.step for e in acc.Tensors("eval/accuracy")] == [0, 3, 6]


def test_overwrite_keeps_what_the_user_put_in_the_run_directory(capsys, run):
    path, args = run
    (path / ".tmp-notes").write_text("mine")
    (path / "tb" / "my_plot.png").write_text("mine")
    (path / "ckpt" / "README").write_text("mine")
    code, _, _ = run_cli(capsys, *args, "--overwrite", "--seed=1")
    assert code == 0
    for name in (".tmp-notes", "tb/my_plot.png", "ckpt/README"):
        assert (path / name).read_text() == "mine"


def test_a_tilde_output_dir_is_the_home_directory(
    capsys, tmp_path, data_dir, monkeypatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    code, _, err = run_cli(capsys, "--output_dir=~/x", f"--data_dir={data_dir}", *TINY)
    assert code == 0, err
    assert (tmp_path / "x" / "config.json").exists() and not os.path.exists("~")


@pytest.mark.parametrize(
    "args,needles",
    [
        (["--initializer=small_normal", "--init_std=inf"], ["init_std", "finite"]),
        (["--learning_rate=1e-50"], ["learning_rate is 0 in float32"]),
        (
            ["--initializer=small_normal", "--init_std=1e-50"],
            ["init_std is 0 in float32"],
        ),
        (["--clip_global_norm=inf"], ["--clip_global_norm=inf", "finite"]),
        (["--width=10000000000", "--depth=2"], ["does not fit in memory"]),
        (
            ["--model=gru", "--task=adding", "--spectral_radius=nan"],
            ["spectral_radius"],
        ),
        (["--flagfile=/nonexistent/flags.txt"], ["Unable to open flagfile"]),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(capsys, tmp_path, args, needles):
    out, data = tmp_path / "run", tmp_path / "data"
    code, _, err = run_cli(capsys, f"--output_dir={out}", f"--data_dir={data}", *args)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()
    assert "recipe" not in err  # the recipe's note only for its own settings
    # No sequence dataset was generated for a refused setting.
    assert not data.exists() or not any("adding" in n for n in os.listdir(data))


def test_too_large_a_dataset_is_refused_and_leaves_no_half_built_folder(
    capsys, tmp_path
):
    data = tmp_path / "data"
    code, _, err = run_cli(
        capsys,
        f"--output_dir={tmp_path / 'run'}",
        f"--data_dir={data}",
        "--model=lstm",
        "--task=adding",
        "--num_train=1000000000",
    )
    assert_one_line_error(code, err, "needs about", "GiB of memory")
    assert not (tmp_path / "run").exists()
    assert not data.exists() or not any(data.rglob("*incomplete*"))


def test_a_binary_flagfile_is_one_line(capsys, tmp_path):
    flagfile = tmp_path / "flags.bin"
    flagfile.write_bytes(b"\xff\xfe\x00\x01")
    code, _, err = run_cli(
        capsys, f"--flagfile={flagfile}", f"--output_dir={tmp_path}/r"
    )
    assert_one_line_error(code, err, "is not a text file of flags")


def test_too_long_and_looping_output_dirs_are_one_line(capsys, tmp_path, data_dir):
    long = tmp_path.joinpath(*["d" * 200] * 20)  # about 4,000 characters
    code, _, err = run_cli(
        capsys, f"--output_dir={long}", f"--data_dir={data_dir}", *TINY
    )
    assert_one_line_error(code, err, "is too long")
    assert not (tmp_path / ("d" * 200)).exists()
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    code, _, err = run_cli(
        capsys, f"--output_dir={loop}/run", f"--data_dir={data_dir}", *TINY
    )
    assert_one_line_error(code, err, "symbolic link loop")


def test_help_exits_0(capsys):
    from analysis import cli

    for flag in ("--help", "--helpfull"):
        with pytest.raises(SystemExit) as e:
            cli.parse_flags(["train", flag])
        assert e.value.code == 0 and "--spectral_radius" in capsys.readouterr().out


# SIGTERM at chosen points of a real process: a script wraps one function so
# that the process signals itself there, then runs the real main.
_SIGTERM_AT = """
import os, signal, sys
point = sys.argv[1]
from trainers import loop, train
from analysis import schema

def stop(wrapped, when=lambda *a, **k: True):
    def run(*args, **kwargs):
        if when(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
        return wrapped(*args, **kwargs)
    return run

if point == "after_config":
    write_json = schema.write_json
    def after(path, obj):
        write_json(path, obj)
        if path.endswith("config.json"):
            os.kill(os.getpid(), signal.SIGTERM)
    schema.write_json = after
elif point == "step0_eval":
    loop._Parts.log_eval = stop(loop._Parts.log_eval, lambda self, step: step == 0)
elif point == "final_save":
    loop._save_model = stop(loop._save_model)
sys.argv = ["train", *sys.argv[2:]]
train.run_main()
"""


@pytest.mark.parametrize("point", ["after_config", "step0_eval", "final_save"])
def test_sigterm_at_any_point_leaves_a_true_status_and_exit_130(
    capsys, caplog, tmp_path, data_dir, point
):
    out = tmp_path / "run"
    args = [f"--output_dir={out}", f"--data_dir={data_dir}", *TINY]
    proc = subprocess.run(
        [sys.executable, "-c", _SIGTERM_AT, point, *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    status = schema.Status.from_json(json.load(open(out / "status.json")))
    assert status.state == "failed" and "run the same command" in status.message
    assert status.owner is None
    if point != "final_save":
        return
    # And the same command resumes it to the end (from its last checkpoint).
    with caplog.at_level(logging.INFO):
        code, stdout, stderr = run_cli(capsys, *args)
    assert code == 0 and "completed at step 6" in stdout, stderr
    assert "resuming from step 6" in caplog.text


def test_sigterm_during_start_up_exits_130(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "trainers.train", f"--output_dir={tmp_path}/r"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )
    time.sleep(1.0)  # inside the library imports (they take several seconds)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"Traceback" not in err
    assert not (tmp_path / "r").exists()


def _mount_tmpfs(path, size):
    path.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {done.stderr!r}")


def test_a_full_disk_fails_the_run_in_one_line_and_it_resumes(
    capsys, tmp_path, data_dir
):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "200k")  # two checkpoints of this net do not fit
    try:
        args = [
            f"--data_dir={data_dir}",
            "--depth=4",
            "--width=96",
            "--num_steps=60",
            "--log_every_steps=1",
            "--checkpoint_every_steps=10",
        ]
        proc = subprocess.run(
            [sys.executable, "-m", "trainers.train", f"--output_dir={disk}/run", *args],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=300,
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        errors = [
            line for line in proc.stderr.splitlines() if line.startswith("error:")
        ]
        assert len(errors) == 1, proc.stderr[-3000:]
        assert "No space left on device" in errors[0]
        assert "Traceback" not in proc.stderr
        status = json.load(open(disk / "run" / "status.json"))
        assert status["state"] == "failed" and "resume from step" in status["message"]
        shutil.copytree(disk / "run", tmp_path / "moved")
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    code, out, err = run_cli(capsys, f"--output_dir={tmp_path}/moved", *args)
    assert code == 0 and "completed at step 60" in out, err


def test_resuming_in_a_read_only_directory_is_one_line(tmp_path, data_dir, capsys):
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "4m")
    try:
        args = [f"--output_dir={disk}/run", f"--data_dir={data_dir}", *TINY]
        assert run_cli(capsys, *args)[0] == 0
        _as_interrupted_at_3(disk / "run")
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        before = _files(disk / "run")
        code, _, err = run_cli(capsys, *args)
        assert_one_line_error(code, err, "not writable")
        assert _files(disk / "run") == before
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_compare_on_malformed_run_directories_is_one_line(run, tmp_path):
    path, _ = run
    cases = {
        "config.json": ("[1, 2]", "config.json"),
        "status.json": ('{"state": "completed", "step": "six"}', "step"),
        "metrics.jsonl": ('{"step": 1, "grad_norms": {"a": "big"}}\n', "line 1"),
        "eval.jsonl": ('{"step": 0, "accuracy": "high"}\n', "accuracy"),
    }
    for name, (content, needle) in cases.items():
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(path, bad)
        (bad / name).write_text(content)
        proc = subprocess.run(
            [sys.executable, "-m", "analysis.compare", str(bad)],
            capture_output=True,
            text=True,
            env=ENV,
            timeout=120,
        )
        assert proc.returncode == 2, (name, proc.stderr[-1000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and name in lines[0] and needle in lines[0], lines


def test_compare_says_diverged_and_what_was_measured_before(capsys, tmp_path, data_dir):
    out = tmp_path / "run"
    code, _, _ = run_cli(
        capsys,
        f"--output_dir={out}",
        f"--data_dir={data_dir}",
        *TINY,
        "--activation=relu",
        "--initializer=he_normal",
        "--learning_rate=1e12",
    )
    assert code == 3
    row = compare.rows([load_run(str(out))])[1]
    step = json.load(open(out / "status.json"))["nonfinite"]["step"]
    assert row[-1].startswith(f"diverged at step {step}")


def test_every_registered_model_loads_in_a_fresh_process_with_zoo_load_model(
    tmp_path,
):
    import numpy as np

    import zoo

    inputs = {"vector": (6,), "image": (8, 8, 1), "sequence": (5, 2)}
    expected = {}
    for name in zoo.list_models():
        spec = zoo.model_spec(name)
        shape = inputs[spec.input_kinds[0]]
        model = zoo.get_model(name, input_shape=shape, num_outputs=3, **spec.tiny)
        x = np.random.default_rng(0).normal(size=(4, *shape)).astype("float32")
        np.save(tmp_path / f"{name}.x.npy", x)
        expected[name] = model(x).numpy()
        model.save(tmp_path / f"{name}.keras")
    script = (
        "import sys, numpy as np, zoo\n"
        "for name in sys.argv[2:]:\n"
        "    d = sys.argv[1]\n"
        "    m = zoo.load_model(f'{d}/{name}.keras', safe_mode=True)\n"
        "    np.save(f'{d}/{name}.y.npy', m(np.load(f'{d}/{name}.x.npy')).numpy())\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), *expected],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, y in expected.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.y.npy"), y)
