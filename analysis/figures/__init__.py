"""The report's figures, one module per kind, each usable on its own.

    >>> from analysis import figures
    >>> from analysis.rundir import load_run
    >>> runs = {"plain": [load_run("runs/p0"), load_run("runs/p1")],
    ...         "residual": [load_run("runs/r0")]}
    >>> fig = figures.depth_profile(runs)      # a matplotlib Figure
    >>> fig.savefig("depth.png")

`runs` is {arm: [runs of its seeds]} (loaded with analysis.rundir
`load_run` or `load_probe`), a list of runs (each its own arm), or one run.
Each function returns a `matplotlib.figure.Figure` made without pyplot.
Each module also has `rows(runs)` (the data, which the report writes as
CSV) and `draw(rows)`; KINDS lists them for the report.

Tested by tests/analysis/test_report.py.
"""

import dataclasses
from collections.abc import Callable

from analysis.figures import curves, heatmap, ratio, temporal, theory
from analysis.figures import depth_profile as _depth

depth_profile = _depth.depth_profile
gradient_heatmap = heatmap.gradient_heatmap
ratio_over_steps = ratio.ratio_over_steps
training_curves = curves.training_curves
gradient_through_time = temporal.gradient_through_time
activation_derivatives = theory.activation_derivatives
edge_of_chaos = theory.edge_of_chaos
propagation = theory.propagation


@dataclasses.dataclass(frozen=True)
class Kind:
    """One kind of figure: its data, its drawing and a caption."""

    name: str
    rows: Callable
    draw: Callable
    caption: str


KINDS = (
    Kind(
        "depth_profile",
        _depth.rows,
        _depth.draw,
        "Per-layer gradient norm by depth position, at the first logged step "
        "(the initial weights) and at the last; line: median over seeds, band: "
        "min-max.",
    ),
    Kind(
        "heatmap",
        heatmap.rows,
        heatmap.draw,
        "log10 gradient norm per depth position (rows) and logged step "
        "(columns), each arm's first seed; blank cells are non-finite.",
    ),
    Kind(
        "ratio",
        ratio.rows,
        ratio.draw,
        "First/last layer gradient-norm ratio over steps with the vanishing "
        "and exploding thresholds; line: median over seeds, band: min-max.",
    ),
    Kind(
        "curves",
        curves.rows,
        curves.draw,
        "Training loss (solid, window means) and eval (dashed) over steps, "
        "with the task's input-independent baseline (dotted).",
    ),
    Kind(
        "gradient_through_time",
        temporal.rows,
        temporal.draw,
        "||dL/dh_t|| against the time step t, at init and at the end; for a "
        "linear RNN with W = a I the theory a^(T-t) ||dL/dh_T|| is dotted.",
    ),
    Kind(
        "activation_derivatives",
        theory.activation_rows,
        theory.draw_activation,
        "Closed-form activation derivatives with their bounds (dotted) and the "
        "peaks measured by autodiff in float32 (crosses).",
    ),
    Kind(
        "propagation",
        theory.propagation_rows,
        theory.draw_propagation,
        "std(h_L) / std(h_1) of the deep ReLU MLP at init per initializer "
        "(dots, one per seed) and the variance argument of He et al. 2015 "
        "(dotted).",
    ),
    Kind(
        "edge_of_chaos",
        theory.edge_rows,
        theory.draw_edge,
        "Depth ratio of the random tanh MLP against sigma_w^2, measured and as "
        "mean-field theory predicts from chi; right: chi itself.",
    ),
)

__all__ = [
    "KINDS",
    "Kind",
    "activation_derivatives",
    "depth_profile",
    "edge_of_chaos",
    "gradient_heatmap",
    "gradient_through_time",
    "propagation",
    "ratio_over_steps",
    "training_curves",
]
