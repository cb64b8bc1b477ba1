"""||dL/dh_t|| against t for recurrent models, at init and at the end, and
the linear RNN's theory next to it.

    >>> figures.gradient_through_time({"lstm": runs, "vanilla": runs2})

Training runs give it when they logged the gradient through time
(`log_gradient_through_time`: gradient_through_time.jsonl, the first row at
init and the last at the end); probes (analysis/probes.py
gradient_through_time) give it at init. For a linear RNN with recurrent
matrix a*I the theory is ||dL/dh_t|| = a^(T-t) ||dL/dh_T||, drawn dotted
over the measurement. Tested by tests/analysis/test_report.py.
"""

from analysis.figures import _common as c
from analysis.rundir import LoadedProbe, LoadedRun


def _linear_radius(run) -> float | None:
    """a, when the run is a linear RNN with W = a I; else None."""
    if isinstance(run, LoadedProbe):
        args = run.args
    else:
        args = run.config.get("model_kwargs", {})
    if (
        args.get("activation") == "linear"
        and args.get("recurrent_initializer") == "identity"
    ):
        a = args.get("spectral_radius")
        return float(a) if c.finite(a) else None
    return None


def _series(run) -> list[tuple[str, int, list]]:
    """(when, step, norms over t = 1..T) of a run or probe."""
    if isinstance(run, LoadedProbe):
        norms = run.values.get("state_grad_norms")
        return [("init", 0, norms)] if norms else []
    rows = run.gradient_through_time
    if not rows:
        return []
    out = [("init", rows[0].step, rows[0].state_grad_norms)]
    if len(rows) > 1:
        out.append(("end", rows[-1].step, rows[-1].state_grad_norms))
    return out


def rows(runs) -> list[dict]:
    out = []
    for arm, arm_runs in c.by_arm(runs).items():
        for run in arm_runs:
            if not isinstance(run, (LoadedRun, LoadedProbe)):
                continue
            a = _linear_radius(run)
            for when, step, norms in _series(run):
                T = len(norms)
                last = norms[-1]
                for t, v in enumerate(norms, start=1):
                    row = {
                        "arm": arm,
                        "seed": c.seed_of(run),
                        "when": when,
                        "step": step,
                        "t": t,
                        "state_grad_norm": v if c.finite(v) else None,
                    }
                    if a is not None and when == "init" and c.finite(last):
                        row["theory_a_pow_T_minus_t"] = a ** (T - t) * last
                    out.append(row)
    return out


def draw(rows: list[dict]):
    if not rows:
        return c.empty("no gradient through time recorded")
    arms = c.arm_order(rows)
    whens = [w for w in ("init", "end") if any(r["when"] == w for r in rows)]
    fig, axes = c.figure(len(whens))
    for ax, when in zip(axes, whens):
        here = [r for r in rows if r["when"] == when]
        for arm in arms:
            mine = [r for r in here if r["arm"] == arm]
            if not mine:
                continue
            col = c.color(arms, arm)
            c.band(
                ax,
                ((r["t"], r["seed"], r["state_grad_norm"]) for r in mine),
                color=col,
                label=arm,
            )
            theory = [
                r
                for r in mine
                if "theory_a_pow_T_minus_t" in r and r["seed"] == mine[0]["seed"]
            ]
            if theory:
                ax.plot(
                    [r["t"] for r in theory],
                    [r["theory_a_pow_T_minus_t"] for r in theory],
                    color="k",
                    linestyle=":",
                    linewidth=1.5,
                    label=f"theory a^(T-t) ({arm})",
                )
        ax.set_yscale("log")
        ax.set_xlabel("time step t (T = last)")
        ax.set_ylabel("||dL/dh_t||")
        steps = sorted({r["step"] for r in here})
        ax.set_title("at init" if when == "init" else f"at the end (step {steps[-1]})")
        ax.grid(True, which="major", alpha=0.3)
        c.legend(ax)
    return fig


def gradient_through_time(runs):
    """||dL/dh_t|| against t at init and at the end (a Figure)."""
    return draw(rows(runs))
