"""What needs no TensorFlow does not import it (ARCHITECTURE.md, "Imports").

`import zoo` (registries, signatures, pairs, task specs), the flags made
from them, `--help` of every main, the refusals of bad input that flags,
signatures and the output_dir decide, the report of a run that already
ended, and reading run directories all come before TensorFlow, Keras, TFDS
or scikit-learn is imported. Each case runs in a fresh interpreter (this
test process imported TensorFlow long ago) and reports which of those it
imported; none does, so each takes about a second.
"""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from analysis import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "run1_plain_mlp"

# Runs a main (as `python -m` does) or a snippet, then prints which heavy
# libraries ended up imported, as the last line of stdout.
_DRIVER = """
import json, runpy, sys
what, args = sys.argv[1], sys.argv[2:]
code = 0
try:
    if what == "-c":
        exec(args[0])
    else:
        sys.argv = [what, *args]
        runpy.run_module(what, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code or 0
heavy = ("tensorflow", "keras", "tensorflow_datasets", "sklearn")
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def _run(what, *args):
    """(exit code, heavy modules imported, stdout, stderr) of a fresh process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", _DRIVER, what, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], report["heavy"], proc.stdout, proc.stderr


def test_import_zoo_and_read_every_signature_imports_no_tensorflow():
    code, heavy, _, err = _run(
        "-c",
        "import zoo, zoo.pretraining, trainers.flags\n"
        "for m in zoo.list_models(): zoo.model_spec(m).arguments()\n"
        "for t in zoo.list_tasks(): zoo.task_spec(t).arguments()\n"
        "for p in zoo.list_pairs(): zoo.get_pair(p).describe()\n"
        "from trainers.config import RunConfig\n"
        "RunConfig(model='lstm', task='adding').resolved()\n",
    )
    assert (code, heavy) == (0, []), err[-2000:]


@pytest.mark.parametrize(
    "main", ["trainers.train", "trainers.pretrain", "trainers.suite"]
)
def test_help_imports_no_tensorflow(main):
    code, heavy, out, err = _run(main, "--helpfull")
    assert (code, heavy) == (0, []), err[-2000:]
    assert "--output_dir" in out


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--num_steps=0"], "--num_steps=0"),
        (["--model=nope"], "--model"),
        (["--init_std=inf"], "init_std"),
        (["--model=lstm", "--width=3"], "--width does not apply"),
        (["--output_dir=README.md"], "is not a directory"),
    ],
)
def test_bad_input_is_refused_before_tensorflow(args, needle):
    args = args if any("output_dir" in a for a in args) else ["--output_dir=/x", *args]
    code, heavy, _, err = _run("trainers.train", *args)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert (code, heavy) == (2, []), err[-2000:]
    assert len(errors) == 1 and needle in errors[0], err


def test_a_run_that_already_ended_is_reported_before_tensorflow(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, heavy, out, err = _run(
        "trainers.train", f"--flagfile={run}/flags.txt", f"--output_dir={run}"
    )
    assert (code, heavy) == (0, []), err[-2000:]
    assert "completed at step 6" in out and "already trained 6 steps" in err
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # reported, nothing written


def test_reading_run_directories_imports_no_tensorflow():
    code, heavy, out, err = _run("analysis.compare", str(FIXTURE))
    assert (code, heavy) == (0, []), err[-2000:]
    assert "plain_mlp" in out


def test_a_run_process_loads_keras_without_its_extras_and_can_still_import_them():
    # cli.import_keras skips scikit-learn and matplotlib (~2 s of every run's
    # start); Keras works, and both import afterwards.
    # The allocator asked for before the first op is the one TensorFlow uses.
    code, heavy, out, err = _run(
        "-c",
        "import os; os.environ.pop('TF_CPU_ALLOCATOR_USE_BFC', None);"
        "from analysis import cli; cli.use_cpu_allocator('bfc');"
        "cli.import_keras(); import sys, keras;"
        "print('during', sorted({'sklearn', 'matplotlib'} & set(sys.modules)));"
        "print('dense', keras.layers.Dense(2)(keras.ops.ones((1, 3))).shape);"
        "import sklearn.datasets as d; print('digits', d.load_digits().data.shape);"
        "import matplotlib.pyplot as plt; print('figure', type(plt.figure()).__name__);"
        "from trainers import runner; print('allocator', runner.cpu_allocator())",
    )
    assert code == 0, err[-2000:]
    assert "during []" in out and "dense (1, 2)" in out, out
    assert "figure Figure" in out, out
    assert "digits (1797, 64)" in out and "sklearn" in heavy
    assert "allocator bfc" in out, out


def test_a_cpu_allocator_set_by_the_user_is_kept(monkeypatch):
    monkeypatch.setenv(cli.BFC_ENV, "false")
    cli.use_cpu_allocator("bfc")
    assert os.environ[cli.BFC_ENV] == "false"
    cli.use_cpu_allocator("bfc", force=True)
    assert os.environ[cli.BFC_ENV] == "true"
    monkeypatch.delenv(cli.BFC_ENV)
    cli.use_cpu_allocator("default")
    assert os.environ[cli.BFC_ENV] == "false"
