"""analysis.compare and the run-directory reader on real and damaged runs."""

import json
import os
import subprocess
import sys

import pytest

from analysis import compare
from analysis.rundir import RunDirError, load_run
from trainers import runner


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A plain and a residual deep sigmoid MLP, briefly trained."""
    out = {}
    for name in ("plain_mlp", "residual_mlp"):
        config = runner.RunConfig(
            model=name,
            model_kwargs={"depth": 12, "width": 16},
            task="teacher",
            task_kwargs={
                "num_features": 8,
                "num_classes": 4,
                "num_train": 256,
                "num_eval": 64,
            },
            learning_rate=0.1,
            batch_size=32,
            num_steps=10,
            log_every_steps=5,
            eval_every_steps=5,
        )
        out[name] = str(tmp_path_factory.mktemp(name))
        runner.run(config, out[name])
    return out


def _cli(*paths):
    return subprocess.run(
        [sys.executable, "-m", "analysis.compare", *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_table_shows_state_baseline_and_gradient_ratios(runs):
    table = compare.rows([load_run(runs["plain_mlp"]), load_run(runs["residual_mlp"])])
    header, plain, residual = table
    assert header[0] == "run" and plain[1:4] == ["plain_mlp", "completed", "10"]
    assert plain[4].startswith("accuracy ") and "(" in plain[4]  # value (baseline)
    assert plain[-1] == "vanishing" and residual[-1] == "healthy"
    assert float(plain[6]) < 1e-3 < float(residual[6])


def test_cli_prints_table_and_refuses_bad_runs_in_one_line(runs, tmp_path):
    proc = _cli(runs["plain_mlp"], runs["residual_mlp"])
    assert proc.returncode == 0 and "vanishing below 0.001" in proc.stdout
    proc = _cli(str(tmp_path / "nope"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'nope'} is not a directory"
    ]


def test_truncated_and_corrupt_metrics(runs, tmp_path):
    import shutil

    damaged = str(tmp_path / "damaged")
    shutil.copytree(runs["plain_mlp"], damaged)
    metrics = os.path.join(damaged, "metrics.jsonl")
    text = open(metrics).read()
    rows = text.splitlines()
    # Cut inside the last row, as a killed writer would: the whole rows stay.
    with open(metrics, "w") as f:
        f.write(text[: len(text) - len(rows[-1]) // 2 - 1])
    run = load_run(damaged)
    assert [r.step for r in run.metrics] == [json.loads(r)["step"] for r in rows[:-1]]
    assert _cli(damaged).returncode == 0
    # Damage in the middle is an error naming the file and line.
    with open(metrics, "w") as f:
        f.write(rows[0] + "\n" + rows[1][:10] + "\n" + rows[2] + "\n")
    with pytest.raises(RunDirError, match="metrics.jsonl line 2 is not valid JSON"):
        load_run(damaged)
    proc = _cli(damaged)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "metrics.jsonl line 2" in proc.stderr
    os.remove(os.path.join(damaged, "config.json"))
    with pytest.raises(RunDirError, match="config.json is missing"):
        load_run(damaged)


def test_ratios_follow_the_recorded_axis_and_older_runs_the_naming_rule(runs, tmp_path):
    import shutil

    run = load_run(runs["plain_mlp"])
    assert run.record.depth_axis[0] == [0, "block00_dense/kernel"]
    assert len(run.record.depth_axis) == 12
    expected = compare.rows([run])[1]
    # A gradzoo-run-1 directory from before the axis was recorded.
    legacy = str(tmp_path / "legacy")
    shutil.copytree(runs["plain_mlp"], legacy)
    config = os.path.join(legacy, "config.json")
    old = json.loads(open(config).read())
    del old["depth_axis"]
    with open(config, "w") as f:
        json.dump(old, f)
    assert compare.rows([load_run(legacy)])[1][1:] == expected[1:]
    # The recorded axis is the one used: its first two blocks only.
    old["depth_axis"] = [[0, "block00_dense/kernel"], [1, "block01_dense/kernel"]]
    with open(config, "w") as f:
        json.dump(old, f)
    short = compare.rows([load_run(legacy)])[1]
    assert short[6] != expected[6] and short[-1] == "healthy"
