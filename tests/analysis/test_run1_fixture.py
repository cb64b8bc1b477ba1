"""The committed gradzoo-run-1 fixtures load with today's analysis reader.

How they were made: tests/fixtures/README.md. The resume and upgrade tests
that use them live with the trainer's tests.

    python -m pytest tests/analysis/test_run1_fixture.py -q
"""

import os

import pytest

from analysis import schema
from analysis.rundir import load_run

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(__file__)), "fixtures")


def _fixture(name):
    return os.path.join(FIXTURES, name)


@pytest.mark.parametrize("name", ["run1_plain_mlp", "run1_unfinished"])
def test_fixture_is_a_gradzoo_run_1_directory(name):
    run = load_run(_fixture(name))
    assert run.record.format == "gradzoo-run-1"
    assert (run.config["model"], run.config["task"]) == ("plain_mlp", "digits")
    assert run.config["num_steps"] == 6 and run.record.num_parameters == 754
    # No recorded axis in run-1: the old naming rule gives it.
    assert run.record.depth_axis is None
    assert run.depth_axis == [[i, f"block0{i}_dense/kernel"] for i in range(3)]
    assert run.gradient_through_time == []


def test_completed_fixture_reads_whole():
    run = load_run(_fixture("run1_plain_mlp"))
    assert run.status.state == "completed" and run.status.step == 6
    assert run.status.owner is None
    assert [r.step for r in run.metrics] == [1, 2, 4, 6]
    assert [r.step for r in run.evals] == [0, 3, 6]
    assert os.path.exists(_fixture("run1_plain_mlp/model.keras"))


def test_unfinished_fixture_drops_its_torn_last_line():
    path = _fixture("run1_unfinished")
    with open(os.path.join(path, schema.METRICS_FILE)) as f:
        text = f.read()
    assert not text.endswith("\n")  # the torn row is really there
    assert text.rsplit("\n", 1)[1] == '{"step": 5, "loss": 2.2'
    run = load_run(path)
    # Whole rows only: step 4 was logged after the last checkpoint (step 3),
    # so a resume drops it too; the torn row is dropped on reading.
    assert [r.step for r in run.metrics] == [1, 2, 3, 4]
    assert [r.step for r in run.evals] == [0, 3]
    assert run.status.state == "failed" and run.status.step == 4
    assert "resume from step 3" in run.status.message
    assert sorted(os.listdir(os.path.join(path, schema.CKPT_DIR))) == [
        "checkpoint",
        "ckpt-0.data-00000-of-00001",
        "ckpt-0.index",
        "ckpt-3.data-00000-of-00001",
        "ckpt-3.index",
    ]
    with open(os.path.join(path, schema.CKPT_DIR, "checkpoint")) as f:
        assert f.readline() == 'model_checkpoint_path: "ckpt-3"\n'
    assert not os.path.exists(os.path.join(path, schema.MODEL_FILE))
