"""Side-by-side table of finished runs: final eval and gradient-norm ratios.

    python -m analysis.compare runs/x runs/x2

A pretraining run's phases are ordinary run directories: compare its
fine-tuning with a run from scratch (the pair mlp_pretraining) by naming
`<output_dir>/finetune`; the model column says "(pretrained)".

For each run: its state, final eval metric next to the task's baseline, and
the first/last gradient-norm ratio along the model's depth axis (recorded in
config.json; for older runs without one, `gradients.legacy_depth_axis`) at
the first logged step (initialization) and the last one, with the
vanishing/exploding verdict.
Exit code 2 with one line if a run directory cannot be read.

Tested by tests/analysis/test_compare.py.
"""

import math
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402

from analysis import gradients  # noqa: E402
from analysis.cli import fail, parse_flags  # noqa: E402
from analysis.rundir import LoadedRun, RunDirError, load_run  # noqa: E402


def _ratio(row, axis) -> tuple[str, str]:
    """The first/last ratio and verdict of one metrics row, or dashes."""
    if not row or not row.grad_norms or not axis:
        return "-", "-"
    on_axis = [row.grad_norms.get(path) for _, path in axis]
    if any(v is None or not math.isfinite(v) for v in on_axis):
        return "-", f"non-finite gradient at step {row.step}"
    try:
        profile = gradients.gradient_profile(row.grad_norms, axis)
    except ValueError:
        return "-", "-"
    return f"{profile.first_last_ratio:.2e}", profile.verdict


def _finite_rows(run: LoadedRun) -> list:
    """Metrics rows whose gradient norms are all finite (a diverged run's
    last rows may hold nulls)."""
    return [
        r
        for r in run.metrics
        if r.grad_norms
        and all(v is not None and math.isfinite(v) for v in r.grad_norms.values())
    ]


def _model(run: LoadedRun) -> str:
    """The model's name; a pretraining phase says which (trainers/pretrain.py)."""
    name = run.config.get("model", "?")
    phase = run.record.phase
    if not phase:
        return name
    if phase.get("init") == "pretrained":
        return f"{name} (pretrained)"
    return f"{name} ({phase.get('name', 'phase')})"


def rows(runs: list[LoadedRun]) -> list[list[str]]:
    """The table as strings, header first."""
    table = [
        [
            "run",
            "model",
            "state",
            "step",
            "eval metric (baseline)",
            "eval loss",
            "|g1|/|gL| first",
            "|g1|/|gL| last",
            "verdict",
        ]
    ]
    for run in runs:
        info = run.record.task_info
        metric = info.get("main_metric", "accuracy")
        base = info.get("baselines", {}).get(metric)
        ev = run.final_eval.metrics if run.final_eval else {}
        value = ev.get(metric)
        axis = run.depth_axis
        first_ratio, _ = _ratio(run.metrics[0] if run.metrics else None, axis)
        last_ratio, last_verdict = _ratio(
            run.metrics[-1] if run.metrics else None, axis
        )
        if run.status.state == "diverged":
            # Say so, and show the last ratio measured before it happened.
            finite = _finite_rows(run)
            last_ratio, before = _ratio(finite[-1] if finite else None, axis)
            at = (run.status.nonfinite or {}).get("step", "?")
            last_verdict = f"diverged at step {at}" + (
                f" ({before} before)" if before != "-" else ""
            )
        table.append(
            [
                run.path,
                _model(run),
                run.status.state,
                str(run.status.step),
                "-"
                if value is None
                else f"{metric} {value:.3g}"
                + ("" if base is None else f" ({base:.3g})"),
                "-" if ev.get("loss") is None else f"{ev['loss']:.3g}",
                first_ratio,
                last_ratio,
                last_verdict,
            ]
        )
    return table


def format_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
        for row in table
    )


def main(argv):
    if len(argv) < 2:
        fail("name one or more run directories")
    try:
        runs = [load_run(path) for path in argv[1:]]
    except RunDirError as e:
        fail(e)
    print(format_table(rows(runs)))
    print(
        "|g1|/|gL|: gradient norm at the first position of the model's depth "
        "axis over the last's; "
        f"vanishing below {gradients.VANISHING_BELOW:g}, exploding above "
        f"{gradients.EXPLODING_ABOVE:g}."
    )


def run_main():
    """Console-script entry point (gradzoo-compare)."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()
