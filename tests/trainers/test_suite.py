"""The suite (trainers/suite.py): bad input, the toy suite end to end on the
local pool and on a real local Ray instance, resume after a kill, and two
suites on one folder.

The end-to-end tests start `python -m trainers.suite` processes on the toy
suite (analysis/claims.py TOY_CLAIMS, one seed: a probe and one 2-step run).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from analysis import claims, schema
from trainers import suite

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start(output_dir, *args):
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trainers.suite",
            "--suite=toy",
            "--seeds=1",
            f"--output_dir={output_dir}",
            *args,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc, timeout=600):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return out


def ledger(output_dir) -> dict:
    return schema.read_json(os.path.join(output_dir, suite.LEDGER_FILE))


def numbers(led) -> list:
    """What must agree between executors: verdicts and measured values."""
    return [
        (c["id"], c["verdict"], [s["values"] for s in c["seeds"]])
        for c in led["claims"]
    ]


def completions(output_dir, name) -> int:
    with open(os.path.join(output_dir, suite.LOGS_DIR, name + ".log")) as f:
        return f.read().count("completed at step")


# -- bad input: refused before any run, in one line ------------------------


@pytest.mark.parametrize(
    "options, needle",
    [
        (dict(suite="nope"), "Unknown suite 'nope'"),
        (dict(only=("C99",)), "Unknown claim C99"),
        (dict(scale="huge"), "Unknown scale 'huge'"),
        (dict(seeds=0), "--seeds must be >= 1"),
        (dict(workers=0), "--workers must be >= 1"),
        (dict(workers=999), "--oversubscribe"),
        (dict(executor="slurm"), "Unknown executor"),
        (dict(executor="ray", ray_address="127.0.0.1:1"), "unreachable"),
    ],
)
def test_bad_input_is_refused(tmp_path, options, needle):
    o = suite.Options(output_dir=str(tmp_path / "s"), **{"suite": "toy", **options})
    with pytest.raises(suite.SuiteError, match=needle):
        suite.prepare(o)
    assert not os.path.exists(tmp_path / "s")


def test_a_folder_with_other_declarations_is_refused_naming_the_claim(tmp_path):
    root = str(tmp_path / "s")
    suite.prepare(suite.Options(output_dir=root, suite="toy"))
    manifest = os.path.join(root, suite.MANIFEST_FILE)
    m = schema.read_json(manifest)
    m["claims"]["T2"]["criterion"] = "first_last_ratio < 2"
    schema.write_json(manifest, m)
    with pytest.raises(suite.SuiteError, match="claim T2 declared differently"):
        suite.prepare(suite.Options(output_dir=root, suite="toy"))
    with pytest.raises(suite.SuiteError, match="holds suite 'toy'"):
        suite.prepare(suite.Options(output_dir=root, suite="quick", only=("C1",)))


def test_a_suite_waits_for_another_filling_the_same_folder(tmp_path):
    # The moment two suites started together used to collide at: the first
    # has made its folders but not yet written suite.json.
    import fcntl
    import threading

    root = tmp_path / "s"
    (root / suite.CONFIGS_DIR).mkdir(parents=True)
    fd = os.open(root, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    outcome = []
    second = threading.Thread(
        target=lambda: outcome.append(
            suite.prepare(suite.Options(output_dir=str(root), suite="toy"))
        )
    )
    second.start()
    second.join(0.5)
    assert second.is_alive() and not outcome  # it waits for the lock
    suite.prepare(suite.Options(output_dir=str(root / "first"), suite="toy"))
    os.replace(root / "first" / suite.MANIFEST_FILE, root / suite.MANIFEST_FILE)
    os.close(fd)  # the first suite is done with the manifest
    second.join(30)
    assert outcome and outcome[0][0] == str(root)


def test_a_file_as_output_dir_is_refused_in_one_line(tmp_path):
    path = tmp_path / "f"
    path.write_text("x")
    with pytest.raises(suite.SuiteError, match="is a file"):
        suite.prepare(suite.Options(output_dir=str(path), suite="toy"))


def test_run_names_come_from_the_resolved_config():
    arm = claims.TOY_CLAIMS["T2"].scales["quick"].arms["plain"]
    a, b = suite.make_job(dict(arm), 0), suite.make_job(dict(arm), 0)
    assert a.name == b.name and a.name.startswith("plain_mlp-teacher-s0-")
    # An explicit default changes nothing; another value changes the hash.
    assert suite.make_job({**arm, "grad_accum_steps": 1}, 0).name == a.name
    assert suite.make_job({**arm, "learning_rate": 0.2}, 0).name != a.name


def test_the_longest_declared_runs_start_first():
    p = suite.plan(claims.CLAIMS, "quick", 1)
    queue = p.queue()
    assert sorted(queue) == sorted(p.jobs)
    seconds = [p.jobs[name].seconds for name in queue]
    assert seconds == sorted(seconds, reverse=True) and seconds[0] > seconds[-1]
    # C14's 101-block runs (the slowest) lead; undeclared ones keep plan order.
    assert p.jobs[queue[0]].spec["model_kwargs"]["depth"] == 101
    undeclared = [name for name in p.jobs if p.jobs[name].seconds == 0]
    assert queue[-len(undeclared) :] == undeclared


def test_the_demo_runs_c5_mlp_pair_only_and_judges_it_without_the_cnn():
    demo = suite.plan(claims.SUITES["demo"], "quick", 1)
    quick = suite.plan({"C5": claims.CLAIMS["C5"]}, "quick", 1)
    assert set(demo.seed_paths["C5"][0]) == {"plain", "residual"}
    assert set(quick.seed_paths["C5"][0]) == {
        "plain",
        "residual",
        "plain_cnn",
        "resnet",
    }
    # The MLP runs are the quick suite's own (same names).
    assert demo.seed_paths["C5"][0]["plain"] == quick.seed_paths["C5"][0]["plain"]
    assert "cnn_loss_gap" not in claims.SUITES["demo"]["C5"].criterion.text


def test_every_declared_run_resolves_and_pretraining_runs_use_their_main(tmp_path):
    from trainers.config import NOT_COMPARED, load_pretrain_config_file

    for scale in claims.SCALES:
        p = suite.plan(claims.CLAIMS, scale, 1)
        assert {"train", "pretrain", "probe"} == {j.kind for j in p.jobs.values()}
    root = str(tmp_path / "s")
    p = suite.prepare(suite.Options(output_dir=root, only=("C10",), seeds=1))[1]
    job = p.jobs[p.seed_paths["C10"][0]["pretrained"]]
    scratch = p.jobs[p.seed_paths["C10"][0]["scratch"]]
    assert job.name.startswith("pretrain-plain_mlp-digits-s0-")
    assert job.argv(root, None)[1:3] == ["-m", "trainers.pretrain"]
    assert scratch.kind == "train" and scratch.spec == {**job.spec["run"]}
    # The file the suite writes is what trainers.pretrain --config reads.
    c = load_pretrain_config_file(job.config_path(root)).resolved().to_dict()
    c["run"] = {k: v for k, v in c["run"].items() if k not in NOT_COMPARED}
    assert c == job.spec and c["steps_per_layer"] == 300


def test_the_command_line_fails_in_one_line(tmp_path):
    proc = start(str(tmp_path / "s"), "--only=C5")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        "error: Unknown claim C5 in suite 'toy'. Known: T1, T2."
    ]


# -- end to end ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_suites_one_folder(tmp_path_factory):
    """Two suites started together on one folder: the toy suite on the pool."""
    root = str(tmp_path_factory.mktemp("suite") / "toy")
    first = start(root, "--workers=2")
    second = start(root, "--workers=2")
    return root, finish(first), finish(second)


def test_two_suites_on_one_folder_run_each_run_once(two_suites_one_folder):
    root, out1, out2 = two_suites_one_folder
    led = ledger(root)
    train = [n for n in led["runs"] if n.startswith("plain_mlp")]
    assert len(led["runs"]) == 2 and len(train) == 1
    assert completions(root, train[0]) == 1
    with open(os.path.join(root, train[0], schema.METRICS_FILE)) as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2]
    assert "verdict: HOLDS" in out1 and "verdict: HOLDS" in out2


def test_the_toy_suite_gives_verdicts_and_a_progress_line(two_suites_one_folder):
    root, out, _ = two_suites_one_folder
    led = ledger(root)
    assert [(c["id"], c["verdict"]) for c in led["claims"]] == [
        ("T1", "holds"),
        ("T2", "holds"),
    ]
    assert all(r["state"] == "completed" for r in led["runs"].values())
    assert "runs: 2/2 done, 0 running, 0 failed" in out


def test_ray_gives_the_same_ledger_as_the_local_pool(two_suites_one_folder, tmp_path):
    pytest.importorskip("ray")
    root = str(tmp_path / "ray")
    out = finish(start(root, "--executor=ray", "--workers=2"))
    assert "(ray)" in out
    assert numbers(ledger(root)) == numbers(ledger(two_suites_one_folder[0]))


def test_a_killed_suite_resumes_without_rerunning_completed_runs(tmp_path):
    root = str(tmp_path / "toy")
    proc = start(root, "--workers=1")  # the training run goes first (by name)
    train = None
    deadline = time.time() + 180
    while time.time() < deadline:
        names = [n for n in os.listdir(root)] if os.path.isdir(root) else []
        train = next((n for n in names if n.startswith("plain_mlp")), None)
        status = suite.read_status(os.path.join(root, train)) if train else None
        if status and status.state == "completed":
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    while (
        "run directory:"
        not in open(os.path.join(root, suite.LOGS_DIR, train + ".log")).read()
    ):  # the training process outlives the suite: let it exit
        time.sleep(0.2)
    time.sleep(1)
    run = os.path.join(root, train)
    mtimes = {n: os.path.getmtime(os.path.join(run, n)) for n in os.listdir(run)}
    out = finish(start(root, "--workers=1"))
    assert {n: os.path.getmtime(os.path.join(run, n)) for n in os.listdir(run)} == (
        mtimes
    )
    assert completions(root, train) == 1
    assert [c["verdict"] for c in ledger(root)["claims"]] == ["holds", "holds"]
    assert "runs: 2/2 done" in out
