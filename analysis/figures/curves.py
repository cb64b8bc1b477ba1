"""Training and eval loss, and the task's main metric, over steps, with the
task's baseline (the input-independent predictor, from config.json).

    >>> figures.training_curves({"plain": runs, "residual": runs2})

Training values are the logged window means (metrics.jsonl), eval values
the evaluations (eval.jsonl, step 0 included). Seeds as median with a
min-max band; diverged runs marked at their step. Tested by
tests/analysis/test_report.py.
"""

import math

from analysis.figures import _common as c
from analysis.rundir import LoadedRun


def rows(runs) -> list[dict]:
    out, baselines = [], {}
    arms = c.by_arm(runs)
    for arm, arm_runs in arms.items():
        for run in arm_runs:
            if not isinstance(run, LoadedRun):
                continue
            info = run.record.task_info
            metric = info.get("main_metric") or "loss"
            for name in ("loss", metric):
                if c.finite(info.get("baselines", {}).get(name)):
                    baselines.setdefault(name, info["baselines"][name])
            seed = c.seed_of(run)
            for r in run.metrics:
                for name, v in (("loss", r.loss), (metric, r.metrics.get(metric))):
                    out.append(_row(arm, seed, "train", r.step, name, v))
            for r in run.evals:
                for name in ("loss", metric):
                    out.append(
                        _row(arm, seed, "eval", r.step, name, r.metrics.get(name))
                    )
    out = [r for r in out if r["value"] is not None]
    out = _without_copies_of_the_loss(out)
    # A metric named like the loss (mse for a regression) is drawn once.
    out = _dedupe(out)
    for name, v in baselines.items():
        out.append({"split": "baseline", "name": name, "value": v})
    return out + c.divergences(arms)


def _without_copies_of_the_loss(rows: list[dict]) -> list[dict]:
    """Drops a metric that equals the loss everywhere (mse for a regression
    whose loss is the MSE): one panel, not two identical ones."""
    loss = {
        (r["arm"], r["seed"], r["split"], r["step"]): r["value"]
        for r in rows
        if r["name"] == "loss"
    }
    names = {r["name"] for r in rows} - {"loss"}
    copies = {
        n
        for n in names
        if all(
            math.isclose(
                r["value"],
                loss.get((r["arm"], r["seed"], r["split"], r["step"]), math.nan),
                rel_tol=1e-6,
            )
            for r in rows
            if r["name"] == n
        )
    }
    return [r for r in rows if r["name"] not in copies]


def _row(arm, seed, split, step, name, value) -> dict:
    return {
        "arm": arm,
        "seed": seed,
        "split": split,
        "step": step,
        "name": name,
        "value": value if c.finite(value) else None,
    }


def _dedupe(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for r in rows:
        key = (r["arm"], r["seed"], r["split"], r["step"], r["name"])
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def draw(rows: list[dict]):
    points = [r for r in rows if r.get("split") in ("train", "eval")]
    if not points:
        return c.empty("no loss logged")
    arms = c.arm_order(points)
    names = list(dict.fromkeys(r["name"] for r in points))
    names = ["loss"] + [n for n in names if n != "loss"]
    names = [n for n in names if any(r["name"] == n for r in points)]
    fig, axes = c.figure(len(names))
    for ax, name in zip(axes, names):
        mine = [r for r in points if r["name"] == name]
        for arm in arms:
            for split, style in (
                ("train", {}),
                ("eval", {"linestyle": "--", "marker": "o", "markersize": 3}),
            ):
                c.band(
                    ax,
                    (
                        (r["step"], r["seed"], r["value"])
                        for r in mine
                        if r["arm"] == arm and r["split"] == split
                    ),
                    color=c.color(arms, arm),
                    label=f"{arm} {split}",
                    **style,
                )
        for r in rows:
            if r.get("split") == "baseline" and r["name"] == name:
                ax.axhline(
                    r["value"],
                    color="k",
                    linestyle=":",
                    linewidth=1.2,
                    label=f"task baseline {r['value']:.3g}",
                )
        if c.spans_decades(r["value"] for r in mine):
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title(f"{name}: training (solid) and eval (dashed)")
        ax.grid(True, alpha=0.3)
        c.mark_divergences(ax, rows, arms)
        c.legend(ax)
    return fig


def training_curves(runs):
    """Training and eval loss and metric over steps, with the baseline."""
    return draw(rows(runs))
