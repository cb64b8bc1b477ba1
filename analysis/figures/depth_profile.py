"""Per-layer gradient norm by depth, at init and at the end, arms overlaid.

    >>> from analysis import figures
    >>> figures.depth_profile({"plain": [run0, run1], "residual": [run2]})

"init" is the first logged step (step 1: its gradient is taken at the
initial weights), "end" the last logged step with finite norms. A position
shared by several variables counts as the L2 norm of theirs
(analysis.gradients.gradient_profile). Tested by tests/analysis/test_report.py.
"""

from matplotlib.ticker import MaxNLocator

from analysis.figures import _common as c
from analysis.gradients import gradient_profile
from analysis.rundir import LoadedRun


def rows(runs) -> list[dict]:
    out = []
    for arm, arm_runs in c.by_arm(runs).items():
        for run in arm_runs:
            if not isinstance(run, LoadedRun) or not run.depth_axis:
                continue
            logged = [
                r
                for r in run.metrics
                if r.grad_norms and all(c.finite(v) for v in r.grad_norms.values())
            ]
            if not logged:
                continue
            for when, row in (("init", logged[0]), ("end", logged[-1])):
                try:
                    profile = gradient_profile(row.grad_norms, run.depth_axis)
                except ValueError:
                    continue
                for position, (layer, norm) in enumerate(
                    zip(profile.layers, profile.norms)
                ):
                    out.append(
                        {
                            "arm": arm,
                            "seed": c.seed_of(run),
                            "when": when,
                            "step": row.step,
                            "position": position,
                            "layer": layer,
                            "grad_norm": norm,
                        }
                    )
    return out


def draw(rows: list[dict]):
    if not rows:
        return c.empty("no per-layer gradient norms logged")
    arms = c.arm_order(rows)
    fig, axes = c.figure(2)
    for ax, when in zip(axes, ("init", "end")):
        here = [r for r in rows if r["when"] == when]
        for arm in arms:
            mine = [r for r in here if r["arm"] == arm]
            steps = sorted({r["step"] for r in mine})
            label = (
                arm if when == "init" else f"{arm} (step {steps[-1]})" if steps else arm
            )
            c.band(
                ax,
                ((r["position"], r["seed"], r["grad_norm"]) for r in mine),
                color=c.color(arms, arm),
                label=label,
                marker="o",
                markersize=3,
            )
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("depth position (0 = input side)")
        ax.set_ylabel("gradient norm ||dL/dW||")
        ax.set_title("at init (step 1)" if when == "init" else "at the end")
        ax.grid(True, which="major", alpha=0.3)
        c.legend(ax)
    return fig


def depth_profile(runs):
    """Per-layer gradient norm by depth at init and at the end (a Figure)."""
    return draw(rows(runs))
