"""The first/last gradient-norm ratio over steps, with the thresholds.

    >>> figures.ratio_over_steps({"plain": runs, "residual": runs2})

The ratio is ||dL/dW|| at the lowest depth position over the highest
(analysis.gradients.gradient_profile); below VANISHING_BELOW the gradient
is called vanishing, above EXPLODING_ABOVE exploding. Seeds as median with
a min-max band; diverged runs marked at their step. Tested by
tests/analysis/test_report.py.
"""

from analysis.figures import _common as c
from analysis.gradients import EXPLODING_ABOVE, VANISHING_BELOW, gradient_profile
from analysis.rundir import LoadedRun


def rows(runs) -> list[dict]:
    out = []
    arms = c.by_arm(runs)
    for arm, arm_runs in arms.items():
        for run in arm_runs:
            if not isinstance(run, LoadedRun) or not run.depth_axis:
                continue
            for row in run.metrics:
                if not all(c.finite(v) for v in row.grad_norms.values()):
                    continue
                try:
                    ratio = gradient_profile(row.grad_norms, run.depth_axis)
                except ValueError:
                    continue
                out.append(
                    {
                        "arm": arm,
                        "seed": c.seed_of(run),
                        "step": row.step,
                        "first_last_ratio": ratio.first_last_ratio,
                    }
                )
    return out + c.divergences(arms)


def draw(rows: list[dict]):
    points = [r for r in rows if "first_last_ratio" in r]
    if not points:
        return c.empty("no per-layer gradient norms logged")
    arms = c.arm_order(rows)
    fig, (ax,) = c.figure(1, width=6.4)
    for arm in arms:
        c.band(
            ax,
            (
                (r["step"], r["seed"], r["first_last_ratio"])
                for r in points
                if r["arm"] == arm
            ),
            color=c.color(arms, arm),
            label=arm,
            marker="o",
            markersize=2.5,
        )
    ax.axhline(VANISHING_BELOW, color="0.3", linestyle=":", linewidth=1)
    ax.axhline(EXPLODING_ABOVE, color="0.3", linestyle=":", linewidth=1)
    for y, text in (
        (VANISHING_BELOW, "vanishing below"),
        (EXPLODING_ABOVE, "exploding above"),
    ):
        ax.annotate(
            f"{text} {y:g}",
            xy=(0, y),
            xycoords=("axes fraction", "data"),
            xytext=(3, 2),
            textcoords="offset points",
            fontsize=7,
            color="0.3",
        )
    values = [
        r["first_last_ratio"] for r in points if c.positive(r["first_last_ratio"])
    ]
    ax.set_ylim(
        min(values + [VANISHING_BELOW]) / 10, max(values + [EXPLODING_ABOVE]) * 10
    )
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||dL/dW_first|| / ||dL/dW_last||")
    ax.set_title("first/last layer gradient-norm ratio")
    ax.grid(True, which="major", alpha=0.3)
    c.mark_divergences(ax, rows, arms)
    c.legend(ax, loc="center right")
    return fig


def ratio_over_steps(runs):
    """The first/last gradient-norm ratio at every logged step (a Figure)."""
    return draw(rows(runs))
