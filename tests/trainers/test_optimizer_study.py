"""C12's study in the suite (trainers/suite.py, analysis/optimizers.py) at toy
size, in process: two optimizers, two learning rates, one new seed, four
steps. The tuned runs are planned from the grid's results; a second pass
reuses every run; the ledger holds the study's tables, figures and verdict;
every run logs its update norms.
"""

import concurrent.futures
import io
import math
import os

import pytest

from analysis import claims, optimizers, report
from analysis.rundir import load_run
from trainers import config as config_lib
from trainers import runner, suite


class InProcess:
    """An executor that trains each job in this process (no TF start-up)."""

    def __init__(self):
        self.started = []

    def submit(self, argv, log_path, timeout):
        args = dict(a[2:].split("=", 1) for a in argv if a.startswith("--"))
        self.started.append(os.path.basename(args["output_dir"]))
        c = config_lib.load_config_file(args["config"]).resolved()
        result = runner.run(c, args["output_dir"])
        rc = 0 if result.state == "completed" else 3
        future = concurrent.futures.Future()
        future.set_result((rc, result.message))
        return future

    def shutdown(self):
        pass


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("study"))
    o = suite.Options(output_dir=root, suite="toy_optimizers", seeds=1)
    first, again = InProcess(), InProcess()
    for executor in (first, again):
        root, p = suite.prepare(o)
        suite.execute(root, p, executor, 1, 60, None, out=io.StringIO())
    return root, p, suite.build_ledger(root, "toy_optimizers", p), first, again


def test_the_tuned_rate_is_the_best_grid_rate_rerun_with_new_seeds(study):
    root, p, _, first, again = study
    sp = p.studies["T12"]
    problem = claims.TOY_STUDY.problems["toy"]
    for opt in ("sgd", "adam"):
        runs = sp.layout["toy"][opt]
        finals = {
            r: optimizers.final(os.path.join(root, n), problem)
            for r, n in runs["grid"].items()
        }
        ranked = sorted(
            finals,
            key=lambda r: (finals[r].value is None, -(finals[r].value or 0), r),
        )
        assert sorted(runs["seeds"]) == [1]  # apart from the tuning seed 0
        for name in runs["seeds"].values():
            cfg = load_run(os.path.join(root, name)).config
            assert cfg["learning_rate"] == ranked[0]
            assert cfg["optimizer"] == opt
        default = load_run(os.path.join(root, runs["default"])).config
        assert default["learning_rate"] == (0.01 if opt == "sgd" else 0.001)
    # 2 optimizers x (default + 2 rates + 1 seed), each run once.
    assert len(first.started) == len(set(first.started)) == 8
    assert again.started == []


def test_the_ledger_holds_the_study_and_a_verdict(study):
    _, _, led, _, _ = study
    (c12,) = led["claims"]
    s = c12["study"]
    assert c12["verdict"] in ("holds", "does not hold", "inconclusive")
    r = s["problems"]["toy"]
    assert set(r["optimizers"]) == {"sgd", "adam"}
    for x in r["optimizers"].values():
        assert [g["rate"] for g in x["grid"]] == [1e-05, 100.0]
        assert x["tuned"]["planned"] == x["tuned"]["ended"] == 1
        assert x["curves"]["eval_accuracy"]["steps"] == [0, 2, 4]
        assert "1" in x["ratios"]  # the 3-layer MLP has a depth axis
    rows = optimizers.table_rows(s)
    assert {row["optimizer"] for row in rows} == {"sgd", "adam"}
    assert "winner" in suite.format_ledger(led)
    section = optimizers.section(led)
    assert set(section.figures) == {
        "toy_performance",
        "toy_sensitivity",
        "toy_ratios",
    }


def test_every_logging_row_has_the_update_norms(study):
    root, p, _, _, _ = study
    # SGD's default rate 0.01: the update is far above float32's rounding of
    # the weights (at 1e-5 the applied update differs from lr * g by ~5%).
    name = p.studies["T12"].layout["toy"]["sgd"]["default"]
    run = load_run(os.path.join(root, name))
    for row in run.metrics:
        assert set(row.update_norms) == set(row.grad_norms)
        kernel = "block00_dense/kernel"
        # SGD: the update is the rate times the (unclipped) gradient.
        assert row.update_norms[kernel] == pytest.approx(
            0.01 * row.grad_norms[kernel], rel=1e-3
        )
        assert row.update_ratios[kernel] > 0
        assert row.update_ratios["block00_dense/bias"] is None or row.step > 1


def test_study_options_are_checked():
    with pytest.raises(suite.SuiteError, match="Unknown problem nope"):
        suite.check_options(
            suite.Options(output_dir="x", suite="optimizers", problems=("nope",))
        )
    with pytest.raises(suite.SuiteError, match="Unknown budget 'huge'"):
        suite.check_options(
            suite.Options(output_dir="x", suite="optimizers", budget="huge")
        )
    with pytest.raises(suite.SuiteError, match="apply to --suite=optimizers"):
        suite.check_options(suite.Options(output_dir="x", budget="small"))


def test_the_study_names_keras_optimizers_and_a_log_grid():
    assert set(optimizers.OPTIMIZERS) <= set(config_lib.OPTIMIZERS)
    grid = optimizers.rate_grid(8)
    assert grid[0] == 1e-5 and grid[-1] == 100.0 and len(grid) == 8
    steps = [math.log10(b / a) for a, b in zip(grid, grid[1:])]
    assert steps == pytest.approx([1.0] * 7)
    assert len(optimizers.rate_grid(22)) == 22


def test_the_report_has_the_study_section(study, tmp_path):
    root = study[0]
    out = str(tmp_path / "report")
    report.write_report([root], out)
    with open(os.path.join(out, "report.md")) as f:
        md = f.read()
    assert "## T12: optimizers" in md and "| toy | sgd |" in md
    for name in ("performance", "sensitivity", "ratios"):
        assert os.path.exists(
            os.path.join(out, "figures", f"optimizers-toy_{name}.png")
        )
