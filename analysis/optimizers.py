"""C12, optimizers compared by the DeepOBS protocol: declarations and results.

Schmidt, Schneider & Hennig 2021 ("Descending through a crowded valley")
compare optimizers by a fixed protocol; this module declares it for
gradzoo's problems and reads its runs:

1. each optimizer at its Keras defaults, once (the "no tuning" baseline);
2. a log-spaced learning-rate grid from 1e-5 to 1e2 (the budget sets the
   number of points), every other hyper-parameter at its default, one
   tuning seed (TUNING_SEED);
3. the best grid rate by final evaluation metric (diverged runs rank last,
   ties go to the lower rate), re-run with new seeds (1..N), kept apart
   from the tuning seed.

The suite (trainers/suite.py, `--suite=optimizers`) turns these
declarations into runs: stages 1 and 2 up front, stage 3 for an optimizer
as soon as its grid has ended. Everything here reads run directories only:
`study_results` builds the ledger's study (tables, curves, sensitivity,
gradient and update ratios, the winner per problem, C12's verdict), and
`section` turns it into matplotlib figures, table rows and text.

A problem is one entry of PROBLEMS: RunConfig fields without optimizer,
learning rate and seed, plus the metric it is judged by.

    python -m trainers.suite --suite=optimizers --budget=small \
        --output_dir=runs/optimizers --workers=2

Tested by tests/analysis/test_optimizers.py and tests/trainers/test_suite.py.
"""

import dataclasses
import math
import statistics
from collections.abc import Mapping

from analysis import verdicts
from analysis.gradients import gradient_profile

# The nine optimizers (trainers/config.py OPTIMIZERS holds their Keras
# classes; tests/analysis/test_optimizers.py checks the names agree).
OPTIMIZERS = (
    "sgd",
    "momentum",
    "nesterov",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "nadam",
    "adamw",
)
KERAS_ADADELTA_RATE = 0.001  # keras.optimizers.Adadelta's default
TUNING_SEED = 0
RATE_RANGE = (1e-5, 1e2)  # DeepOBS' learning-rate search space
RATIO_STEPS = (1, 100)  # steps whose gradient and update ratios are reported


@dataclasses.dataclass(frozen=True)
class Budget:
    grid_points: int  # log-spaced learning rates over RATE_RANGE
    seeds: int  # new seeds for the tuned rate


BUDGETS = {
    "small": Budget(grid_points=8, seeds=3),  # one rate per decade
    "large": Budget(grid_points=22, seeds=10),  # three per decade
}


@dataclasses.dataclass(frozen=True)
class Problem:
    """One test problem: what is trained, and the metric that judges it."""

    description: str
    fields: Mapping  # RunConfig fields, without optimizer, learning_rate, seed
    metric: str  # a key of eval.jsonl
    higher_is_better: bool


_CADENCE = {
    "log_every_steps": 50,  # RATIO_STEPS' 100 is a logging step
    "eval_every_steps": 50,
    "checkpoint_every_steps": 300,
    "clipping": "none",  # the optimizers alone (the adding recipe clips)
}

# Adding a problem is one entry here.
PROBLEMS = {
    "deep_sigmoid_mlp": Problem(
        "6x64 sigmoid MLP (Glorot uniform) on digits, batch 128, 300 steps: "
        "the first layer's gradient is 2.4e-4 of the last's at init",
        {
            "model": "plain_mlp",
            # At depth 10 (first/last 1.6e-6) no optimizer left chance in 300
            # steps at any rate of the small grid, so the study could rank
            # nothing; at depth 6, seed 0, Adam at 0.01 reached 0.77 eval
            # accuracy and SGD at 0.1 and 1.0 stayed at chance.
            "model_kwargs": {
                "depth": 6,
                "width": 64,
                "activation": "sigmoid",
                "initializer": "glorot_uniform",
            },
            "task": "digits",
            "batch_size": 128,
            "num_steps": 300,
            **_CADENCE,
        },
        metric="accuracy",
        higher_is_better=True,
    ),
    "lstm_adding": Problem(
        "LSTM (32 units) on the adding problem, T=30, batch 64, 300 steps",
        {
            "model": "lstm",
            "model_kwargs": {"units": 32},
            "task": "adding",
            "task_kwargs": {"sequence_length": 30, "num_train": 5000, "num_eval": 500},
            "batch_size": 64,
            "num_steps": 300,
            **_CADENCE,
        },
        metric="mse",
        higher_is_better=False,
    ),
}


@dataclasses.dataclass(frozen=True)
class Study:
    """What the suite expands: problems x optimizers, at a budget."""

    problems: Mapping[str, Problem]
    optimizers: tuple[str, ...]
    budgets: Mapping[str, Budget]

    def grid(self, budget: str) -> tuple[float, ...]:
        return rate_grid(self.budgets[budget].grid_points)

    def declaration(self, problems, budget: str) -> dict:
        """What must match for two studies to share a folder (seeds aside)."""
        return {
            "grid": list(self.grid(budget)),
            "optimizers": list(self.optimizers),
            "problems": {
                name: {
                    "fields": dict(self.problems[name].fields),
                    "metric": self.problems[name].metric,
                    "higher_is_better": self.problems[name].higher_is_better,
                }
                for name in problems
            },
        }


STUDY = Study(PROBLEMS, OPTIMIZERS, BUDGETS)


def rate_grid(points: int) -> tuple[float, ...]:
    """`points` log-spaced rates over RATE_RANGE, rounded to 3 digits."""
    lo, hi = (math.log10(r) for r in RATE_RANGE)
    if points == 1:
        return (RATE_RANGE[0],)
    step = (hi - lo) / (points - 1)
    return tuple(float(f"{10 ** (lo + i * step):.3g}") for i in range(points))


def default_arm(problem: Problem, optimizer: str) -> dict:
    """Stage 1: the optimizer at Keras' defaults (learning rate included)."""
    return {**problem.fields, "optimizer": optimizer}


def rate_arm(problem: Problem, optimizer: str, rate: float) -> dict:
    """Stages 2 and 3: the optimizer at `rate`, the rest at its defaults."""
    return {**problem.fields, "optimizer": optimizer, "learning_rate": rate}


# ---------------------------------------------------------------------------
# One run's result.


@dataclasses.dataclass(frozen=True)
class Final:
    """How one run ended, and its final evaluation metric (None: diverged)."""

    state: str  # completed or diverged
    value: float | None
    step: int
    message: str


def final(path: str, problem: Problem) -> Final:
    """The run's final metric.

    Raises:
      verdicts.RunProblem: the run is missing, running, failed or unreadable.
    """
    e = verdicts.read_evidence(path, diverged_ok=True)
    value = None
    if e.state == "completed" and e.run.final_eval is not None:
        value = e.run.final_eval.metrics.get(problem.metric)
    if value is not None and not math.isfinite(value):
        value = None
    return Final(e.state, value, e.step, e.message)


def _rank_key(problem: Problem, rate: float, f: Final):
    """Best first: finite before diverged, then the metric, then lower rate."""
    if f.value is None:
        return (1, 0.0, rate)
    return (0, -f.value if problem.higher_is_better else f.value, rate)


def best_rate(problem: Problem, grid: Mapping[float, str]) -> float | None:
    """The tuned rate of stage 2's runs {rate: path}; None until all ended.

    Raises:
      verdicts.RunProblem: kind "failed" when a grid run failed (stage 3
        cannot be chosen without it).
    """
    finals = {}
    for rate, path in grid.items():
        try:
            finals[rate] = final(path, problem)
        except verdicts.RunProblem as p:
            if p.kind == "failed":
                raise
            return None
    return min(finals, key=lambda r: _rank_key(problem, r, finals[r]))


# ---------------------------------------------------------------------------
# The study's results: {problem: {optimizer: {default, grid, seeds}}} of run
# directories -> the ledger's JSON.


def _quartiles(values: list) -> dict:
    v = sorted(values)
    if not v:
        return {"median": None, "q25": None, "q75": None, "min": None, "max": None}
    q = statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else v * 3
    return {"median": q[1], "q25": q[0], "q75": q[2], "min": v[0], "max": v[-1]}


def _try_final(path, problem) -> dict:
    try:
        f = final(path, problem)
    except verdicts.RunProblem as p:
        return {"state": p.kind, "value": None, "message": str(p)}
    return {"state": f.state, "value": f.value, "message": f.message}


def _curves(runs: list, problem: Problem) -> dict:
    """Median and IQR over the seeds of every eval metric and the train loss,
    at the steps all ended seeds share."""
    out = {}
    sources = {
        "eval_" + k: [{r.step: r.metrics.get(k) for r in run.evals} for run in runs]
        for k in (runs[0].evals[0].metrics if runs and runs[0].evals else {})
    }
    sources["train_loss"] = [{r.step: r.loss for r in run.metrics} for run in runs]
    for name, per_run in sources.items():
        steps = sorted(set.intersection(*(set(d) for d in per_run)))
        rows = {"steps": steps, "median": [], "q25": [], "q75": []}
        for s in steps:
            values = [d[s] for d in per_run if d[s] is not None]
            q = _quartiles(values)
            for k in ("median", "q25", "q75"):
                rows[k].append(q[k])
        out[name] = rows
    return out


def _row_at(run, step: int):
    return next((r for r in run.metrics if r.step == step), None)


def _depth_ratios(runs: list) -> dict:
    """First/last gradient and update norm ratios along the depth axis at
    RATIO_STEPS, median over the runs (absent where the axis is too short)."""
    out = {}
    for step in RATIO_STEPS:
        grads, updates = [], []
        for run in runs:
            row = _row_at(run, step)
            if row is None or not row.update_norms or not run.depth_axis:
                continue
            try:
                grads.append(gradient_profile(row.grad_norms, run.depth_axis))
                updates.append(gradient_profile(row.update_norms, run.depth_axis))
            except ValueError:  # one position (an LSTM layer), or a None norm
                continue
        if grads:
            out[str(step)] = {
                "grad_first_last": statistics.median(p.first_last_ratio for p in grads),
                "update_first_last": statistics.median(
                    p.first_last_ratio for p in updates
                ),
                "seeds": len(grads),
            }
    return out


def optimizer_results(problem: Problem, paths: Mapping) -> dict:
    """One optimizer on one problem: `paths` {default, grid {rate: path},
    seeds {seed: path}} -> its default, grid, tuned summary and curves."""
    from analysis.rundir import load_run

    grid = {
        rate: _try_final(path, problem) for rate, path in sorted(paths["grid"].items())
    }
    try:
        tuned_rate = best_rate(problem, paths["grid"])
    except verdicts.RunProblem:
        tuned_rate = None
    seeds, loaded = {}, []
    for seed, path in sorted(paths.get("seeds", {}).items()):
        seeds[seed] = _try_final(path, problem)
        if seeds[seed]["state"] in ("completed", "diverged"):
            loaded.append(load_run(path))
    ended = [s for s in seeds.values() if s["state"] in ("completed", "diverged")]
    values = [s["value"] for s in ended if s["value"] is not None]
    tuned = {
        "rate": tuned_rate,
        "seeds": {str(k): v["value"] for k, v in seeds.items()},
        "ended": len(ended),
        "planned": len(seeds),
        "diverged": len(ended) - len(values),
        **_quartiles(values),
    }
    if tuned["diverged"]:  # a diverged seed: the spread is unbounded
        tuned["min" if problem.higher_is_better else "max"] = (
            -math.inf if problem.higher_is_better else math.inf
        )
    default = _try_final(paths["default"], problem)
    try:
        default["rate"] = load_run(paths["default"]).config["learning_rate"]
    except Exception:  # noqa: BLE001 - a missing run has no rate to show
        default["rate"] = None
    completed = [r for r in loaded if r.status.state == "completed"]
    return {
        "default": default,
        "grid": [{"rate": r, **v} for r, v in grid.items()],
        "tuned": tuned,
        "curves": _curves(completed, problem) if completed else {},
        "ratios": _depth_ratios(loaded),
    }


def _better(problem: Problem, a: float, b: float) -> bool:
    return a > b if problem.higher_is_better else a < b


def winner(problem: Problem, results: Mapping) -> tuple[str | None, str]:
    """(optimizer, why) when one optimizer's tuned spread [min, max] lies
    wholly better than every other's; (None, why) otherwise."""
    complete = {
        o: r["tuned"]
        for o, r in results.items()
        if r["tuned"]["planned"] and r["tuned"]["ended"] == r["tuned"]["planned"]
    }
    if len(complete) < len(results):
        missing = sorted(set(results) - set(complete))
        return None, f"tuned runs missing for {', '.join(missing)}"
    ranked = sorted(
        (o for o in complete if complete[o]["median"] is not None),
        key=lambda o: complete[o]["median"],
        reverse=problem.higher_is_better,
    )
    if not ranked:
        return None, "every tuned run diverged"
    best = ranked[0]
    worst_of_best = complete[best]["min" if problem.higher_is_better else "max"]
    for o in complete:
        if o == best:
            continue
        t = complete[o]
        best_of_other = t["max" if problem.higher_is_better else "min"]
        if best_of_other is not None and not _better(
            problem, worst_of_best, best_of_other
        ):
            return None, (
                f"no clear winner: {best} has the best median, but its spread "
                f"overlaps {o}'s"
            )
    return best, f"{best}'s tuned spread lies wholly beyond every other's"


def judge(problems: Mapping, results: Mapping) -> dict:
    """C12 ("Adam is the best optimizer") from the problems' results.

    Holds where Adam is the clear winner on every problem; does not hold
    where another optimizer's tuned spread lies wholly beyond Adam's on some
    problem; inconclusive otherwise (spreads overlap, or runs missing).
    """
    beaten, won, unclear = [], [], []
    for name, by_opt in results.items():
        p = problems[name]
        best, why = winner(p, by_opt["optimizers"])
        if best == "adam":
            won.append(name)
            continue
        adam = by_opt["optimizers"].get("adam", {}).get("tuned", {})
        adam_worst = adam.get("min" if p.higher_is_better else "max")
        beaters = [
            o
            for o, r in by_opt["optimizers"].items()
            if o != "adam"
            and adam_worst is not None
            and r["tuned"]["ended"] == r["tuned"]["planned"] > 0
            and r["tuned"]["min" if p.higher_is_better else "max"] is not None
            and _better(
                p,
                r["tuned"]["min" if p.higher_is_better else "max"],
                adam.get("max" if p.higher_is_better else "min"),
            )
        ]
        if beaters and adam.get("ended") == adam.get("planned", 0) > 0:
            beaten.append(f"{name} ({', '.join(beaters)} beat Adam)")
        else:
            unclear.append(f"{name} ({why})")
    if beaten:
        verdict = verdicts.NOT_HOLD
        reason = "another optimizer's tuned spread lies wholly beyond Adam's on " + (
            "; ".join(beaten)
        )
    elif won and not unclear:
        verdict, reason = verdicts.HOLDS, "Adam wins clearly on every problem"
    else:
        verdict = verdicts.INCONCLUSIVE
        reason = "Adam is not separated from the rest on " + "; ".join(unclear)
    return {"verdict": verdict, "reason": reason}


def study_results(study: Study, layout: Mapping, budget: str) -> dict:
    """The ledger's study: `layout` {problem: {optimizer: {default: path,
    grid: {rate: path}, seeds: {seed: path}}}} -> tables, curves, verdict."""
    problems = study.problems
    results = {}
    for name, by_opt in layout.items():
        p = problems[name]
        opts = {o: optimizer_results(p, paths) for o, paths in by_opt.items()}
        best, why = winner(p, opts)
        results[name] = {
            "description": p.description,
            "metric": p.metric,
            "higher_is_better": p.higher_is_better,
            "optimizers": opts,
            "winner": best,
            "winner_reason": why,
        }
    v = judge(problems, results)
    adadelta = {
        name: r["optimizers"]["adadelta"]["tuned"]["rate"]
        for name, r in results.items()
        if "adadelta" in r["optimizers"]
    }
    return {
        "budget": budget,
        "grid": list(study.grid(budget)),
        "problems": results,
        "adadelta_tuned_rate": adadelta,
        "keras_adadelta_rate": KERAS_ADADELTA_RATE,
        **v,
    }


# ---------------------------------------------------------------------------
# Presenting it: text, table rows, figures.


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def table_rows(study: Mapping) -> list[dict]:
    """Default vs tuned, one row per problem and optimizer."""
    rows = []
    for name, r in study["problems"].items():
        for o, x in r["optimizers"].items():
            t = x["tuned"]
            rows.append(
                {
                    "problem": name,
                    "optimizer": o,
                    "metric": r["metric"],
                    "default_rate": x["default"].get("rate"),
                    "default": x["default"]["value"],
                    "default_state": x["default"]["state"],
                    "tuned_rate": t["rate"],
                    "tuned_median": t["median"],
                    "tuned_q25": t["q25"],
                    "tuned_q75": t["q75"],
                    "tuned_min": t["min"],
                    "tuned_max": t["max"],
                    "seeds": f"{t['ended'] - t['diverged']}/{t['planned']}",
                    "grad_first_last_1": x["ratios"]
                    .get("1", {})
                    .get("grad_first_last"),
                    "update_first_last_1": x["ratios"]
                    .get("1", {})
                    .get("update_first_last"),
                    "grad_first_last_100": x["ratios"]
                    .get("100", {})
                    .get("grad_first_last"),
                    "update_first_last_100": x["ratios"]
                    .get("100", {})
                    .get("update_first_last"),
                }
            )
    return rows


def format_study(study: Mapping) -> str:
    """The study as terminal text: per problem, default vs tuned and winner."""
    lines = [f"    budget {study['budget']}: rates {study['grid']}"]
    for name, r in study["problems"].items():
        lines.append(f"    {name} ({r['metric']}): {r['description']}")
        lines.append(
            "      optimizer  default (rate)          tuned median [min, max] "
            "(rate, seeds)    grad / update first/last at step 1, 100"
        )
        for row in (x for x in table_rows(study) if x["problem"] == name):
            default = f"{_fmt(row['default'])} ({_fmt(row['default_rate'])})"
            if row["default_state"] not in ("completed",):
                default = f"{row['default_state']} ({_fmt(row['default_rate'])})"
            tuned = (
                f"{_fmt(row['tuned_median'])} [{_fmt(row['tuned_min'])}, "
                f"{_fmt(row['tuned_max'])}] ({_fmt(row['tuned_rate'])}, "
                f"{row['seeds']})"
            )
            ratios = ""
            if row["grad_first_last_1"] is not None:
                ratios = (
                    f"{row['grad_first_last_1']:.2g} / "
                    f"{row['update_first_last_1']:.2g}, "
                    f"{_fmt(row['grad_first_last_100'])} / "
                    f"{_fmt(row['update_first_last_100'])}"
                )
            lines.append(
                f"      {row['optimizer']:<10} {default:<23} {tuned:<40} {ratios}"
            )
        lines.append(
            f"      winner: {r['winner'] or 'no clear winner'} ({r['winner_reason']})"
        )
    lines.append(
        f"    tuned Adadelta rate: {study['adadelta_tuned_rate']} "
        f"(Keras default {study['keras_adadelta_rate']})"
    )
    return "\n".join(lines)


def performance_figure(study: Mapping, problem: str, key: str | None = None):
    """Median and IQR over the seeds of the tuned runs, one line each."""
    import matplotlib.pyplot as plt

    r = study["problems"][problem]
    key = key or f"eval_{r['metric']}"
    fig, ax = plt.subplots(figsize=(6, 4))
    for o, x in r["optimizers"].items():
        c = x["curves"].get(key)
        if not c or not c["steps"]:
            continue
        (line,) = ax.plot(c["steps"], c["median"], label=f"{o} ({x['tuned']['rate']})")
        ax.fill_between(
            c["steps"], c["q25"], c["q75"], alpha=0.2, color=line.get_color()
        )
    ax.set(xlabel="step", ylabel=key, title=f"{problem}: tuned, median and IQR")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def sensitivity_figure(study: Mapping, problem: str):
    """Final metric against learning rate (tuning seed), diverged runs as x."""
    import matplotlib.pyplot as plt

    r = study["problems"][problem]
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = [
        g["value"]
        for x in r["optimizers"].values()
        for g in x["grid"]
        if g["value"] is not None
    ]
    floor = (min(finite) if r["higher_is_better"] else max(finite)) if finite else 0
    for o, x in r["optimizers"].items():
        ok = [(g["rate"], g["value"]) for g in x["grid"] if g["value"] is not None]
        bad = [g["rate"] for g in x["grid"] if g["state"] == "diverged"]
        (line,) = ax.plot(*zip(*ok), marker="o", label=o) if ok else (None,)
        if bad:
            ax.scatter(
                bad,
                [floor] * len(bad),
                marker="x",
                color=line.get_color() if line else None,
            )
    ax.set_xscale("log")
    ax.set(
        xlabel="learning rate",
        ylabel=f"final {r['metric']}",
        title=f"{problem}: learning-rate sensitivity (x: diverged)",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ratio_figure(study: Mapping, problem: str, step: int = 100):
    """First/last gradient ratio against first/last update ratio per
    optimizer (tuned runs, median over seeds) at `step`."""
    import matplotlib.pyplot as plt

    r = study["problems"][problem]
    fig, ax = plt.subplots(figsize=(5, 5))
    for o, x in r["optimizers"].items():
        q = x["ratios"].get(str(step))
        if q and q["grad_first_last"] > 0 and q["update_first_last"] > 0:
            ax.scatter(q["grad_first_last"], q["update_first_last"])
            ax.annotate(o, (q["grad_first_last"], q["update_first_last"]), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_xlim()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.5)  # update ratio = gradient's
    ax.set(
        xlabel="gradient norm, first/last layer",
        ylabel="update norm, first/last layer",
        title=f"{problem} at step {step}",
    )
    fig.tight_layout()
    return fig


@dataclasses.dataclass
class Section:
    title: str
    text: str
    figures: dict  # name -> matplotlib Figure
    rows: list  # table rows (dicts)


def section(ledger: Mapping) -> Section | None:
    """C12's report section from a ledger (ledger.json's dict), or None
    when the ledger holds no optimizer study."""
    claim = next((c for c in ledger.get("claims", []) if c.get("study")), None)
    if claim is None:
        return None
    study = claim["study"]
    figures = {}
    for name, r in study["problems"].items():
        figures[f"{name}_performance"] = performance_figure(study, name)
        figures[f"{name}_sensitivity"] = sensitivity_figure(study, name)
        if any(x["ratios"] for x in r["optimizers"].values()):
            figures[f"{name}_ratios"] = ratio_figure(study, name)
    text = (
        f"{claim['id']}: {claim['statement']} ({claim['source']}). Verdict: "
        f"{claim['verdict']} ({claim['reason']}); expected: {claim['expected']}.\n"
        + format_study(study)
    )
    return Section(f"{claim['id']}: optimizers", text, figures, table_rows(study))
