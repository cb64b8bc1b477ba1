"""Theory next to measurement, for the probes that have a theory.

- `activation_derivatives(probes)`: sigmoid', tanh' and ReLU' on a grid
  (closed form) with their bounds 1/4 and 1, and the peaks the probe
  measured by autodiff in float32 (claim C1).
- `edge_of_chaos(probes)`: log10(||dL/dh_1|| / ||dL/dh_L||) of the random
  tanh MLP against sigma_w^2, next to the mean-field prediction
  (L - 1)/2 * log10(chi), chi = sigma_w^2 E[tanh'(h)^2] the per-layer factor
  of the squared gradient norm (Schoenholz et al. 2017; claim C13).

- `propagation(probes)`: std(h_L) / std(h_1) of the deep ReLU MLP per
  initializer, next to the variance argument of He et al. 2015: each ReLU
  layer multiplies the variance by n Var(W) / 2, so the ratio is
  (n Var(W) / 2)^((L-1)/2): 1 for He (Var 2/n), 2^-(L-1)/2 for Glorot on
  square layers (Var 1/n) (claim C3).

The linear RNN's a^(T-t) is drawn by analysis/figures/temporal.py.
Tested by tests/analysis/test_report.py.
"""

import inspect
import math

import numpy as np

from analysis import probes as probe_functions
from analysis.figures import _common as c
from analysis.rundir import LoadedProbe

SIGMOID_BOUND, TANH_BOUND = 0.25, 1.0
# Schoenholz et al. 2017's critical sigma_w^2 at sigma_b^2 = 0.05 (SCIENCE.md C13).
EDGE_OF_CHAOS_SIGMA_W2 = 1.76


def _probes(runs, name: str) -> list[tuple[str, LoadedProbe]]:
    return [
        (arm, p)
        for arm, ps in c.by_arm(runs).items()
        for p in ps
        if isinstance(p, LoadedProbe) and p.name == name
    ]


def activation_rows(runs) -> list[dict]:
    found = _probes(runs, "activation_derivatives")
    if not found:
        return []
    x = np.linspace(-6, 6, 241)
    s = 1 / (1 + np.exp(-x))
    curves = {
        "sigmoid": s * (1 - s),
        "tanh": 1 - np.tanh(x) ** 2,
        "relu": (x > 0) * 1.0,
    }
    out = [
        {"kind": "theory", "function": f, "x": float(xi), "derivative": float(d)}
        for f, ds in curves.items()
        for xi, d in zip(x, ds)
    ]
    out += [
        {"kind": "bound", "function": "sigmoid", "derivative": SIGMOID_BOUND},
        {"kind": "bound", "function": "tanh", "derivative": TANH_BOUND},
    ]
    for _, p in found:
        for f in ("sigmoid", "tanh"):
            if c.finite(p.values.get(f"{f}_max")):
                out.append(
                    {
                        "kind": "measured",
                        "seed": p.seed,
                        "function": f,
                        "x": p.values.get(f"{f}_argmax", 0.0),
                        "derivative": p.values[f"{f}_max"],
                    }
                )
        if c.finite(p.values.get("relu_positive_max_error")):
            out.append(
                {
                    "kind": "measured",
                    "seed": p.seed,
                    "function": "relu",
                    "x": None,
                    "derivative": 1.0,
                    "max_error_on_positive_side": p.values["relu_positive_max_error"],
                }
            )
    return out


def draw_activation(rows: list[dict]):
    if not rows:
        return c.empty("no activation-derivative probe")
    fig, (ax,) = c.figure(1, width=6.4)
    colors = {"sigmoid": c.COLORS[0], "tanh": c.COLORS[1], "relu": c.COLORS[2]}
    for f, col in colors.items():
        pts = [r for r in rows if r["kind"] == "theory" and r["function"] == f]
        ax.plot(
            [r["x"] for r in pts],
            [r["derivative"] for r in pts],
            color=col,
            label=f"{f}'(x)",
        )
    for r in rows:
        if r["kind"] == "bound":
            ax.axhline(
                r["derivative"], color=colors[r["function"]], linestyle=":", linewidth=1
            )
            ax.annotate(
                f"{r['function']}' <= {r['derivative']:g}",
                xy=(1, r["derivative"]),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 3),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color=colors[r["function"]],
            )
    measured = [r for r in rows if r["kind"] == "measured" and r["x"] is not None]
    for i, r in enumerate(measured):
        ax.plot(
            r["x"],
            r["derivative"],
            "kx",
            markersize=8,
            label="measured peak (autodiff, float32)" if i == 0 else None,
        )
    relu = [r for r in rows if r["kind"] == "measured" and r["function"] == "relu"]
    if relu:
        err = max(r["max_error_on_positive_side"] for r in relu)
        ax.text(
            0.98,
            0.5,
            f"measured ReLU' on x > 0:\nmax |d - 1| = {err:.2g}",
            transform=ax.transAxes,
            fontsize=8,
            ha="right",
        )
    ax.set_xlabel("x")
    ax.set_ylabel("derivative")
    ax.set_title("activation derivatives: bounds and measured peaks")
    ax.set_ylim(-0.05, 1.15)
    ax.grid(True, alpha=0.3)
    c.legend(ax, loc="upper left")
    return fig


def activation_derivatives(runs):
    """C1: the derivatives' closed forms, bounds and measured peaks."""
    return draw_activation(activation_rows(runs))


def _default(name: str, probe: str = "edge_of_chaos"):
    """A probe function's default argument (probe.json holds only those given)."""
    fn = getattr(probe_functions, probe)
    return inspect.signature(fn).parameters[name].default


def edge_rows(runs) -> list[dict]:
    out = []
    for _, p in _probes(runs, "edge_of_chaos"):
        v = p.values
        depth = int(p.args.get("depth", _default("depth")))
        for s2, log_ratio, chi in zip(
            v.get("sigma_w2", []), v.get("log10_ratio", []), v.get("chi", [])
        ):
            out.append(
                {
                    "seed": p.seed,
                    "sigma_w2": s2,
                    "log10_ratio": log_ratio,
                    "chi": chi,
                    "mean_field_log10_ratio": (depth - 1) / 2 * math.log10(chi)
                    if c.positive(chi)
                    else None,
                    "depth": depth,
                    "sigma_b2": v.get("sigma_b2"),
                }
            )
    return out


def draw_edge(rows: list[dict]):
    if not rows:
        return c.empty("no edge-of-chaos probe")
    fig, axes = c.figure(2)
    ax = axes[0]
    pts = lambda key: ((r["sigma_w2"], r["seed"], r[key]) for r in rows)  # noqa: E731
    c.band(
        ax,
        pts("log10_ratio"),
        color=c.COLORS[0],
        label="measured",
        marker="o",
        markersize=3,
    )
    c.band(
        ax,
        pts("mean_field_log10_ratio"),
        color="k",
        label="mean field (L-1)/2 log10 chi",
        linestyle=":",
    )
    ax.axhline(0, color="0.5", linewidth=0.8)
    ax.axvline(
        EDGE_OF_CHAOS_SIGMA_W2,
        color="0.3",
        linestyle="--",
        linewidth=1,
        label=f"critical {EDGE_OF_CHAOS_SIGMA_W2} (Schoenholz 2017)",
    )
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("log10 ||dL/dh_1|| / ||dL/dh_L||")
    ax.set_title(
        f"tanh MLP, depth {rows[0]['depth']}, sigma_b^2 = {rows[0]['sigma_b2']}"
    )
    ax.grid(True, alpha=0.3)
    c.legend(ax)
    ax = axes[1]
    c.band(
        ax,
        pts("chi"),
        color=c.COLORS[1],
        label="chi = sigma_w^2 E[tanh'(h)^2]",
        marker="o",
        markersize=3,
    )
    ax.axhline(
        1, color="0.3", linestyle=":", linewidth=1, label="chi = 1 (edge of chaos)"
    )
    ax.axvline(EDGE_OF_CHAOS_SIGMA_W2, color="0.3", linestyle="--", linewidth=1)
    ax.set_xlabel("sigma_w^2")
    ax.set_ylabel("per-layer factor chi")
    ax.set_title("mean-field per-layer factor")
    ax.grid(True, alpha=0.3)
    c.legend(ax)
    return fig


def edge_of_chaos(runs):
    """C13: the measured depth ratio next to the mean-field prediction."""
    return draw_edge(edge_rows(runs))


# n Var(W) of the square layers' initializers (fan_in = fan_out = n).
_N_VAR = {
    "he_normal": 2.0,
    "he_uniform": 2.0,
    "glorot_normal": 1.0,
    "glorot_uniform": 1.0,
}


def propagation_rows(runs) -> list[dict]:
    out = []
    for arm, p in _probes(runs, "propagation"):
        init = p.args.get("initializer")
        depth = int(p.values.get("depth", _default("depth", "propagation")))
        n_var = _N_VAR.get(init)
        out.append(
            {
                "arm": arm,
                "seed": p.seed,
                "initializer": init,
                "depth": depth,
                "std_ratio": p.values.get("std_ratio"),
                "theory_std_ratio": (n_var / 2) ** ((depth - 1) / 2) if n_var else None,
            }
        )
    return out


def draw_propagation(rows: list[dict]):
    if not rows:
        return c.empty("no propagation probe")
    arms = c.arm_order(rows)
    fig, (ax,) = c.figure(1, width=5.2)
    for i, arm in enumerate(arms):
        mine = [r for r in rows if r["arm"] == arm]
        col = c.color(arms, arm)
        ax.plot(
            [i] * len(mine),
            [r["std_ratio"] for r in mine],
            "o",
            color=col,
            label="measured (each seed)" if i == 0 else None,
        )
        theory = mine[0]["theory_std_ratio"]
        if c.positive(theory):
            ax.hlines(
                theory,
                i - 0.3,
                i + 0.3,
                color="k",
                linestyle=":",
                label="theory (n Var(W)/2)^((L-1)/2)" if i == 0 else None,
            )
    ax.set_xticks(range(len(arms)), [f"{a}\n{rows[0]['depth']} layers" for a in arms])
    ax.set_xlim(-0.7, len(arms) - 0.3)
    ax.set_yscale("log")
    ax.set_ylabel("std(h_L) / std(h_1)")
    ax.set_title("signal scale through a deep ReLU MLP at init")
    ax.grid(True, axis="y", alpha=0.3)
    c.legend(ax)
    return fig


def propagation(runs):
    """C3: std(h_L)/std(h_1) per initializer next to the variance argument."""
    return draw_propagation(propagation_rows(runs))
