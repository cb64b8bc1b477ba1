"""The report (analysis/report.py) and its figures (analysis/figures/).

Run directories are hand-made with the schema's writers
(tests/analysis/fake_runs.py); the suite's folders are laid out and their
ledger built by trainers/suite.py's own plan and build_ledger, as the suite
does after its runs.
"""

import csv
import math
import os
import re

import pytest
from absl.testing import flagsaver
from matplotlib.figure import Figure

from analysis import cli, figures, report, schema
from analysis.claims import TOY_CLAIMS
from analysis.rundir import load_probe, load_run
from tests.analysis.fake_runs import ACTIVATION_VALUES, make_probe, make_run


def toy_suite(root, seeds, *, diverged=(), failed=(), missing=()):
    """The toy suite's folder (T1: a probe, T2: a training run) over `seeds`,
    with the given seeds' T2 run diverged or failed and probe missing."""
    from trainers import suite

    p = suite.plan(TOY_CLAIMS, "quick", seeds)
    for job in p.jobs.values():
        if job.kind == "probe":
            if job.seed not in missing:
                make_probe(
                    job.path(root),
                    "activation_derivatives",
                    ACTIVATION_VALUES,
                    seed=job.seed,
                )
        elif job.seed in diverged:
            make_run(job.path(root), seed=job.seed, state="diverged", diverged_at=10)
        elif job.seed in failed:
            make_run(job.path(root), seed=job.seed, state="failed", steps=(1, 10))
        else:
            make_run(job.path(root), seed=job.seed)
    ledger = suite.build_ledger(str(root), "toy", p)
    schema.write_json(os.path.join(root, suite.LEDGER_FILE), ledger)
    return ledger


def check_written(out):
    """index.html self-contained, report.md's figures and data on disk."""
    html = open(os.path.join(out, "index.html")).read()
    md = open(os.path.join(out, "report.md")).read()
    assert "<script" not in html and "<link" not in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(i.startswith("data:image/png;base64,") for i in images)
    pngs = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(pngs) == len(images)
    for png in pngs:
        assert os.path.getsize(os.path.join(out, png)) > 1000
        with open(os.path.join(out, png[:-4] + ".csv")) as f:
            assert len(list(csv.DictReader(f))) > 0
    return html, md


def test_a_two_claim_suite_renders_ledger_first(tmp_path):
    ledger = toy_suite(tmp_path / "toy", 2)
    assert [c["verdict"] for c in ledger["claims"]] == ["holds", "holds"]
    path = report.write_report([str(tmp_path / "toy")], str(tmp_path / "out"))
    html, md = check_written(tmp_path / "out")
    assert path == str(tmp_path / "out" / "index.html")
    # The ledger is the first section, with each claim's numbers and verdict.
    first = re.search(r'<section id="([^"]+)"', html).group(1)
    assert first == "ledger"
    assert md.index("## Claim ledger") < md.index("## T1: evidence")
    assert "first_last_ratio = " in md and "HOLDS" in md
    for kind in ("depth_profile", "heatmap", "ratio", "curves"):
        assert f"figures/T2-{kind}.png" in md
    assert "figures/T1-activation_derivatives.png" in md


def test_failed_diverged_and_missing_runs_are_said(tmp_path):
    toy_suite(tmp_path / "toy", 3, diverged=(0,), failed=(1,), missing=(2,))
    out = tmp_path / "out"
    report.write_report([str(tmp_path / "toy")], str(out))
    html, md = check_written(out)
    assert "diverged at step 10 (non-finite block00_dense/kernel)" in md
    assert "failed at step 10: interrupted (SIGTERM)" in md
    assert "missing: not run" in md
    assert "INCONCLUSIVE" in md
    # The diverged run is drawn up to its step, and its mark is in the data.
    with open(out / "figures" / "T2-ratio.csv") as f:
        events = [r for r in csv.DictReader(f) if r["event"] == "diverged"]
    assert events == [
        {
            **events[0],
            "arm": "plain",
            "seed": "0",
            "step": "10",
            "variable": "block00_dense/kernel",
        }
    ]


def test_two_runs_without_a_suite_give_a_two_run_report(tmp_path):
    make_run(tmp_path / "runs" / "plain", decay=0.1)
    make_run(tmp_path / "runs" / "residual", decay=0.9, model="residual_mlp")
    out = tmp_path / "out"
    report.write_report([str(tmp_path / "runs")], str(out))
    html, md = check_written(out)
    assert "Claim ledger" not in md
    assert "model=plain_mlp" in md and "model=residual_mlp" in md
    with open(out / "figures" / "runs-teacher-depth_profile.csv") as f:
        arms = {r["arm"] for r in csv.DictReader(f)}
    assert arms == {"plain", "residual"}


def run_report(capsys, *args):
    code = 0
    with flagsaver.flagsaver():
        try:
            cli.parse_flags(["report", *args])
            report.main(["report"])
        except SystemExit as e:
            code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "runs, out, needle",
    [
        ("{tmp}/nope", "{tmp}/out", "is not a directory"),
        ("{tmp}/empty", "{tmp}/out", "no run directories"),
        ("{tmp}/runs", "{tmp}/file", "is not a directory"),
        ("{tmp}/runs", "{tmp}/runs", "is a --runs folder"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, runs, out, needle):
    (tmp_path / "empty").mkdir()
    make_run(tmp_path / "runs" / "a")
    (tmp_path / "file").write_text("x")
    before = sorted(os.listdir(tmp_path))
    code, _, err = run_report(
        capsys,
        f"--runs={runs.format(tmp=tmp_path)}",
        f"--out={out.format(tmp=tmp_path)}",
    )
    assert code == cli.EXIT_USAGE and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err, err
    assert sorted(os.listdir(tmp_path)) == before
    assert not os.path.exists(tmp_path / "runs" / "index.html")


def test_the_command_prints_where_the_report_is_and_drops_stale_figures(
    tmp_path, capsys
):
    make_run(tmp_path / "a")
    (tmp_path / "r" / "figures").mkdir(parents=True)
    stale = tmp_path / "r" / "figures" / "an-older-report.png"
    stale.write_bytes(b"x")
    code, out, err = run_report(
        capsys, f"--runs={tmp_path / 'a'}", f"--out={tmp_path / 'r'}"
    )
    assert code == 0, err
    assert f"report: {tmp_path / 'r' / 'index.html'}" in out
    assert not stale.exists()
    check_written(tmp_path / "r")


def test_figures_are_reusable_from_python_with_theory_next_to_data(tmp_path):
    T, a = 20, 0.9
    norms = [a ** (T - t) * 0.5 for t in range(1, T + 1)]
    linear = load_probe(
        make_probe(
            tmp_path / "lin",
            "gradient_through_time",
            {"state_grad_norms": norms, "spectral_radius": a},
            args={
                "activation": "linear",
                "recurrent_initializer": "identity",
                "spectral_radius": a,
            },
        )
    )
    rnn = load_run(
        make_run(
            tmp_path / "rnn", temporal=[(0, [1e-4, 1e-2, 1.0]), (20, [0.1, 0.5, 1.0])]
        )
    )
    rows = figures.temporal.rows({"linear": [linear], "rnn": [rnn]})
    theory = [r["theory_a_pow_T_minus_t"] for r in rows if r["arm"] == "linear"]
    assert theory == pytest.approx(norms, rel=1e-12)
    assert {r["when"] for r in rows if r["arm"] == "rnn"} == {"init", "end"}
    assert isinstance(figures.gradient_through_time([linear, rnn]), Figure)

    chi = [0.8, 1.0, 1.25]
    edge = load_probe(
        make_probe(
            tmp_path / "edge",
            "edge_of_chaos",
            {
                "sigma_w2": [1.0, 1.76, 2.5],
                "sigma_b2": 0.05,
                "log10_ratio": [-2, 0, 2],
                "chi": chi,
            },
        )
    )
    rows = figures.theory.edge_rows(edge)
    # depth 50 by the probe's default: (50 - 1) / 2 * log10(chi)
    assert [r["mean_field_log10_ratio"] for r in rows] == pytest.approx(
        [24.5 * math.log10(c) for c in chi]
    )
    assert isinstance(figures.edge_of_chaos(edge), Figure)

    he = load_probe(
        make_probe(
            tmp_path / "he",
            "propagation",
            {"std_ratio": 1.1, "depth": 50},
            args={"initializer": "glorot_normal"},
        )
    )
    (row,) = figures.theory.propagation_rows(he)
    assert row["theory_std_ratio"] == pytest.approx(2**-24.5)  # SCIENCE.md C3
    assert isinstance(figures.propagation(he), Figure)

    run = load_run(make_run(tmp_path / "mlp", depth=5, decay=0.1))
    for fn in (
        figures.depth_profile,
        figures.gradient_heatmap,
        figures.ratio_over_steps,
        figures.training_curves,
    ):
        assert isinstance(fn(run), Figure)
    ratios = figures.ratio.rows(run)
    assert ratios[0]["first_last_ratio"] == pytest.approx(1e-4)


def test_a_new_study_is_one_more_section(tmp_path):
    make_run(tmp_path / "runs" / "sgd")
    make_run(tmp_path / "runs" / "adam", config={"optimizer": "adam"})

    def optimizers(inputs):
        arms = {name: [run] for name, run in sorted(inputs.runs.items())}
        return [
            report.Section(
                "optimizers",
                "Optimizer study",
                [
                    report.Text("best: adam"),
                    report.Plot(
                        "opt-curves", "loss", figures.training_curves(arms), [{"x": 1}]
                    ),
                ],
            )
        ]

    out = tmp_path / "out"
    report.write_report(
        [str(tmp_path / "runs")], str(out), sections=[report.runs_overview, optimizers]
    )
    html, md = check_written(out)
    assert '<section id="optimizers">' in html and "## Optimizer study" in md
    # The sections given, in their order; the claims' sections not asked for.
    assert md.index("## Runs") < md.index("## Optimizer study")
    assert "## Runs on teacher" not in md
    assert (out / "figures" / "opt-curves.csv").exists()
