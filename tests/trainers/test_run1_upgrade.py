"""gradzoo-run-1 directories (committed fixtures) resume and upgrade.

The fixtures were written by the gradzoo of commit e040394 (see
tests/fixtures/README.md): an interrupted run with a torn last metrics row,
and a completed run of the same config.
"""

import json
import os
import shutil

import keras
import numpy as np

from analysis import compare, schema
from analysis.rundir import load_run
from tests.helpers import run_cli

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def _copy(name, tmp_path):
    path = tmp_path / name
    shutil.copytree(os.path.join(FIXTURES, name), path)
    return path


def test_an_interrupted_run1_directory_resumes_bitwise_and_is_upgraded(
    capsys, tmp_path, data_dir
):
    run = _copy("run1_unfinished", tmp_path)
    code, out, _ = run_cli(
        capsys,
        f"--flagfile={run / 'flags.txt'}",
        f"--output_dir={run}",
        f"--data_dir={data_dir}",
    )
    assert code == 0 and "completed at step 6" in out
    loaded = load_run(str(run))
    # The torn row and the row after the checkpoint were dropped and replayed.
    assert [r.step for r in loaded.metrics] == [1, 2, 3, 4, 5, 6]
    assert [r.step for r in loaded.evals] == [0, 3, 6]
    # config.json now says gradzoo-run-2, with the model's declared axis.
    assert loaded.record.format == schema.FORMAT
    assert loaded.record.depth_axis == [
        [i, f"block0{i}_dense/kernel"] for i in range(3)
    ]
    # The same weights as the uninterrupted run-1 run of the same config
    # (its logging cadence differs, which does not change training).
    done = keras.saving.load_model(os.path.join(FIXTURES, "run1_plain_mlp/model.keras"))
    resumed = keras.saving.load_model(str(run / "model.keras"))
    for a, b in zip(done.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_a_completed_run1_directory_is_reported_not_retrained(
    capsys, tmp_path, data_dir
):
    run = _copy("run1_plain_mlp", tmp_path)
    metrics = (run / "metrics.jsonl").read_bytes()
    code, out, _ = run_cli(
        capsys,
        f"--flagfile={run / 'flags.txt'}",
        f"--output_dir={run}",
        f"--data_dir={data_dir}",
    )
    assert code == 0 and "completed at step 6" in out
    assert (run / "metrics.jsonl").read_bytes() == metrics


def test_compare_reads_run1_directories_with_the_old_naming_rule():
    table = compare.rows([load_run(os.path.join(FIXTURES, "run1_plain_mlp"))])
    assert table[1][2] == "completed" and table[1][6] != "-"
    assert (
        json.load(open(os.path.join(FIXTURES, "run1_plain_mlp/config.json")))["format"]
        == "gradzoo-run-1"
    )  # reading never rewrites a fixture
