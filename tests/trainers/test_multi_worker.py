"""--strategy=multi_worker: two worker processes on localhost train one run whose
loss curve is the default strategy's; a missing or malformed TF_CONFIG and
jit_compile are refused in one line before any worker waits for its peers."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import zoo
from tests.trainers.test_train_main import assert_one_line_error, run_cli
from trainers import runner

REPO = Path(__file__).resolve().parents[2]
# A worker whose peer never comes waits forever and ignores SIGTERM (it is
# blocked in TensorFlow's C++), so the test ends stragglers with SIGKILL.
TIMEOUT_SECONDS = 120
FLAGS = [
    "--model=plain_mlp",
    "--task=digits",
    "--depth=3",
    "--width=8",
    "--num_steps=20",
    "--log_every_steps=1",
    "--eval_every_steps=10",
    "--checkpoint_every_steps=10",
    "--batch_size=32",
    "--optimizer=momentum",
    "--learning_rate=0.1",
    "--clip_global_norm=0.5",  # clips the all-reduced gradient
]


def _free_ports(n):
    """n distinct ports nobody listens on (held together, so they differ)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("localhost", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tf_config(cluster, index):
    return json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})


def _start_worker(cluster, index, args, log):
    # The checkout, not an installed gradzoo, is what runs (as in this process).
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {
        **os.environ,
        "TF_CONFIG": _tf_config(cluster, index),
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONPATH": path,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "trainers.train", *args],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _losses(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == list(range(1, 21))
    return [r["loss"] for r in rows]


def _read(path):
    with open(path) as f:
        return f.read()


def test_two_workers_train_the_default_run(data_dir, tmp_path, capsys):
    # Built here once: two workers building it in one data_dir would race.
    zoo.load_task("digits", data_dir=data_dir)
    args = [*FLAGS, f"--data_dir={data_dir}"]
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    dirs = [tmp_path / f"worker{i}" for i in range(2)]
    logs = [open(tmp_path / f"worker{i}.log", "w") for i in range(2)]
    procs = []
    try:
        for i in range(2):
            worker_args = [*args, "--strategy=multi_worker", f"--output_dir={dirs[i]}"]
            procs.append(_start_worker(cluster, i, worker_args, logs[i]))
        # The reference run, in this process while the workers train.
        code, _, err = run_cli(capsys, *args, f"--output_dir={tmp_path / 'default'}")
        assert code == 0, err
        deadline = time.monotonic() + TIMEOUT_SECONDS
        try:
            codes = [p.wait(max(1.0, deadline - time.monotonic())) for p in procs]
        except subprocess.TimeoutExpired:
            codes = None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()  # SIGKILL by PID: see TIMEOUT_SECONDS
                p.wait()
        for log in logs:
            log.close()
    outputs = [_read(tmp_path / f"worker{i}.log") for i in range(2)]
    tails = "\n".join(f"--- worker {i}:\n{o[-3000:]}" for i, o in enumerate(outputs))
    assert codes == [0, 0], f"exit codes {codes}\n{tails}"

    chief, other = dirs
    want = _losses(tmp_path / "default")
    got = _losses(chief)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    # The other worker's directory is a full copy of the same run.
    np.testing.assert_allclose(_losses(other), got, atol=1e-6, rtol=0)
    for run_dir, is_chief in ((chief, True), (other, False)):
        config = json.loads(_read(run_dir / "config.json"))
        assert config["num_replicas"] == 2 and config["strategy"] == "multi_worker"
        assert config["worker"]["chief"] is is_chief
        assert json.loads(_read(run_dir / "status.json"))["state"] == "completed"
        assert (run_dir / "model.keras").exists()
    assert (
        "this worker's copy" in outputs[1] and "this worker's copy" not in (outputs[0])
    )


@pytest.mark.parametrize(
    "tf_config,needle",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not JSON"),
        ('{"cluster": {"worker": ["localhost:1"]}}', '"task"'),
        ('{"cluster": {"worker": "localhost:1"}, "task": {}}', "host:port"),
        (
            '{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {}}',
            "not ps",
        ),
        (
            '{"cluster": {"worker": ["a:1", "b:1"]}, '
            '"task": {"type": "worker", "index": 2}}',
            "not a member of its cluster (worker 0-1)",
        ),
    ],
)
def test_missing_or_malformed_tf_config_is_one_line(
    tf_config, needle, tmp_path, capsys, monkeypatch
):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "--strategy=multi_worker", f"--output_dir={out}")
    assert_one_line_error(code, err, needle)
    assert not out.exists()


def test_jit_compile_with_multi_worker_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _tf_config({"worker": ["localhost:1"]}, 0))
    out = tmp_path / "run"
    code, _, err = run_cli(
        capsys, "--strategy=multi_worker", "--jit_compile", f"--output_dir={out}"
    )
    assert_one_line_error(code, err, "jit_compile", "multi_worker")
    assert not out.exists()


@pytest.mark.parametrize(
    "cluster,task,chief",
    [
        ({"worker": ["a:1", "b:1"]}, ("worker", 0), True),
        ({"worker": ["a:1", "b:1"]}, ("worker", 1), False),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("chief", 0), True),
        ({"chief": ["c:1"], "worker": ["a:1"]}, ("worker", 0), False),
    ],
)
def test_the_chief_is_chief_0_else_worker_0(cluster, task, chief):
    env = {
        "TF_CONFIG": json.dumps(
            {"cluster": cluster, "task": {"type": task[0], "index": task[1]}}
        )
    }
    role = runner.read_tf_config(env)
    assert (role.task_type, role.task_index) == task
    assert role.is_chief is chief
    assert role.num_workers == sum(len(v) for v in cluster.values())
