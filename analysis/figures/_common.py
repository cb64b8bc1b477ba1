"""What the figures share: runs grouped by arm, seed bands, diverged marks.

Every figure module has `rows(runs) -> list[dict]` (the figure's data, one
flat dict per point: what the report writes beside it as CSV) and
`draw(rows) -> Figure`, so a figure can be redrawn from its CSV alone; the
module's public function (e.g. `depth_profile(runs)`) is draw(rows(runs)).

Figures are `matplotlib.figure.Figure` objects made without pyplot: no
global state, no GUI backend needed (they render with Agg), and a notebook
displays them as they are.
"""

import math
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from analysis.rundir import LoadedProbe, LoadedRun

# One colour per arm, in the order the arms come.
COLORS = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#9467bd",
    "#ff7f0e",
    "#8c564b",
    "#e377c2",
    "#17becf",
)
PANEL_WIDTH, PANEL_HEIGHT = 4.6, 3.2


def by_arm(runs) -> dict[str, list]:
    """{arm: [runs of its seeds]} from any of: that mapping, a sequence of
    runs (each its own arm, named by its directory) or a single run."""
    if isinstance(runs, (LoadedRun, LoadedProbe)):
        runs = [runs]
    if isinstance(runs, Mapping):
        arms = {str(k): list(v) if _is_seq(v) else [v] for k, v in runs.items()}
    else:
        arms = {}
        for run in runs:
            arms.setdefault(os.path.basename(os.path.normpath(run.path)), []).append(
                run
            )
    return {arm: sorted(rs, key=seed_of) for arm, rs in arms.items() if rs}


def _is_seq(v) -> bool:
    return isinstance(v, Sequence) and not isinstance(v, str)


def seed_of(run) -> int:
    if isinstance(run, LoadedProbe):
        return run.seed
    return int(run.config.get("seed", 0) or 0)


def color(arms: Sequence[str], arm: str) -> str:
    return COLORS[list(arms).index(arm) % len(COLORS)]


def figure(
    panels: int, *, rows: int = 1, width: float = PANEL_WIDTH, right: float = 0.15
):
    """A Figure with `panels` axes in `rows` rows (a list, flat); `right`:
    the margin in inches (room for a colorbar)."""
    cols = math.ceil(panels / rows)
    w, h = width * cols + right - 0.15, PANEL_HEIGHT * rows
    # Fixed margins in inches: a layout engine (constrained, tight) would
    # place them to the pixel but doubles the time to render.
    fig = Figure(figsize=(w, h))
    fig.subplots_adjust(
        left=0.75 / w,
        right=1 - right / w,
        bottom=0.5 / h,
        top=1 - 0.35 / h,
        wspace=0.3,  # of a panel's width: room for the next one's y labels
        hspace=0.35,
    )
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, axes[:panels]


def empty(message: str) -> Figure:
    """A small figure that says why there is nothing to draw."""
    fig = Figure(figsize=(PANEL_WIDTH, 1.2))
    fig.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def positive(v) -> bool:
    return finite(v) and v > 0


def spans_decades(values: Iterable, decades: float = 2.0) -> bool:
    """Whether positive values span more than `decades` powers of ten."""
    vs = [v for v in values if positive(v)]
    return bool(vs) and math.log10(max(vs) / min(vs)) > decades


def band(ax, points: Iterable[tuple], *, color: str, label: str, **line):
    """Median over seeds as a line, min-max as a shaded band.

    `points`: (x, seed, value) triples; seeds missing at some x (a diverged
    run that stopped early) count where they have a value.
    """
    by_x: dict = {}
    seeds = set()
    for x, seed, v in points:
        if finite(v):
            by_x.setdefault(x, []).append(v)
            seeds.add(seed)
    if not by_x:
        return
    xs = sorted(by_x)
    vals = [by_x[x] for x in xs]
    med = [float(np.median(v)) for v in vals]
    n = len(seeds)
    ax.plot(
        xs,
        med,
        color=color,
        label=f"{label} (median of {n})" if n > 1 else label,
        **line,
    )
    if n > 1:
        ax.fill_between(
            xs, [min(v) for v in vals], [max(v) for v in vals], color=color, alpha=0.18
        )


def divergences(arms: Mapping[str, list]) -> list[dict]:
    """Rows marking each diverged run: its arm, seed, the step of the first
    non-finite value and what went non-finite."""
    out = []
    for arm, runs in arms.items():
        for run in runs:
            if not isinstance(run, LoadedRun) or run.status.state != "diverged":
                continue
            nf = run.status.nonfinite or {}
            what = first_nonfinite(run.status)
            out.append(
                {
                    "arm": arm,
                    "seed": seed_of(run),
                    "event": "diverged",
                    "step": int(nf.get("step", run.status.step)),
                    "variable": what,
                }
            )
    return out


def first_nonfinite(status) -> str:
    """What went non-finite first in a diverged run (status.json nonfinite)."""
    nf = status.nonfinite or {}
    first = (nf.get("variables") or nf.get("weights") or [None])[0]
    return first or ("loss" if nf.get("loss_finite") is False else "gradient norm")


def mark_divergences(ax, rows: Iterable[dict], arms: Sequence[str]) -> None:
    """A dashed vertical line per diverged run, and per arm one label with
    the steps and the first non-finite variable."""
    by_arm: dict = {}
    for r in rows:
        if r.get("event") == "diverged":
            by_arm.setdefault(r["arm"], []).append(r)
    for i, (arm, events) in enumerate(by_arm.items()):
        col = color(arms, arm) if arm in arms else "k"
        for r in events:
            ax.axvline(r["step"], color=col, linestyle="--", linewidth=1)
        steps = ", ".join(
            str(r["step"]) for r in sorted(events, key=lambda r: r["step"])
        )
        runs = "run" if len(events) == 1 else f"{len(events)} runs"
        ax.annotate(
            f"{arm}: {runs} diverged at step {steps}\n"
            f"first non-finite: {events[0]['variable']}",
            xy=(0.98, 0.98 - 0.13 * i),
            xycoords="axes fraction",
            ha="right",
            va="top",
            fontsize=7,
            color=col,
            bbox={"boxstyle": "round", "fc": "white", "ec": col, "alpha": 0.85},
        )


def arm_order(rows: Iterable[dict]) -> list[str]:
    seen = []
    for r in rows:
        if "arm" in r and r["arm"] not in seen:
            seen.append(r["arm"])
    return seen


def legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, **kwargs)
