"""A layer x step heatmap of log10 gradient norm, one panel per arm.

    >>> figures.gradient_heatmap({"plain": [run], "residual": [run2]})

Each arm's lowest seed is drawn (a heatmap has no room for a band); steps
where a norm was non-finite are left blank, and a diverged run is marked at
its step. Tested by tests/analysis/test_report.py.
"""

import math

import numpy as np
from matplotlib.ticker import MaxNLocator

from analysis.figures import _common as c
from analysis.gradients import gradient_profile
from analysis.rundir import LoadedRun


def rows(runs) -> list[dict]:
    out = []
    arms = c.by_arm(runs)
    first = {}
    for arm, arm_runs in arms.items():
        run = next(
            (r for r in arm_runs if isinstance(r, LoadedRun) and r.depth_axis), None
        )
        if run is None:
            continue
        first[arm] = [run]
        for row in run.metrics:
            norms = {
                k: (v if c.finite(v) else math.nan) for k, v in row.grad_norms.items()
            }
            try:
                profile = gradient_profile(norms, run.depth_axis)
            except ValueError:
                continue
            for position, v in enumerate(profile.norms):
                out.append(
                    {
                        "arm": arm,
                        "seed": c.seed_of(run),
                        "step": row.step,
                        "position": position,
                        "log10_grad_norm": math.log10(v) if c.positive(v) else None,
                    }
                )
    return out + c.divergences(first)


def draw(rows: list[dict]):
    cells = [r for r in rows if "position" in r]
    if not cells:
        return c.empty("no per-layer gradient norms logged")
    arms = c.arm_order(cells)
    values = [r["log10_grad_norm"] for r in cells if c.finite(r["log10_grad_norm"])]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    fig, axes = c.figure(len(arms), width=4.2, right=1.0)
    mesh = None
    for ax, arm in zip(axes, arms):
        mine = [r for r in cells if r["arm"] == arm]
        steps = sorted({r["step"] for r in mine})
        positions = sorted({r["position"] for r in mine})
        grid = np.full((len(positions), len(steps)), np.nan)
        for r in mine:
            if c.finite(r["log10_grad_norm"]):
                grid[positions.index(r["position"]), steps.index(r["step"])] = r[
                    "log10_grad_norm"
                ]
        mesh = ax.pcolormesh(
            _edges(steps),
            _edges(positions),
            np.ma.masked_invalid(grid),
            cmap="viridis",
            vmin=lo,
            vmax=hi,
            shading="flat",
        )
        seed = mine[0]["seed"]
        ax.set_title(f"{arm} (seed {seed})")
        ax.set_xlabel("step")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("depth position")
        c.mark_divergences(ax, [r for r in rows if r.get("arm") == arm], arms)
    # The colour bar in the right margin: 0.12 in wide, as tall as the panels.
    w, h = fig.get_figwidth(), fig.get_figheight()
    bar = fig.add_axes((1 - 0.85 / w, 0.5 / h, 0.12 / w, 1 - 0.85 / h))
    fig.colorbar(mesh, cax=bar, label="log10 ||dL/dW||")
    return fig


def _edges(xs: list) -> list:
    """Cell edges around sorted centres (midpoints; half a gap at the ends)."""
    if len(xs) == 1:
        return [xs[0] - 0.5, xs[0] + 0.5]
    mids = [(a + b) / 2 for a, b in zip(xs, xs[1:])]
    return [xs[0] - (mids[0] - xs[0])] + mids + [xs[-1] + (xs[-1] - mids[-1])]


def gradient_heatmap(runs):
    """log10 gradient norm over depth position and step (a Figure)."""
    return draw(rows(runs))
