"""The comparative report: run directories -> index.html and report.md.

    python -m analysis.report --runs=runs/demo --out=runs/demo-report

`--runs` takes a suite's folder (trainers/suite.py: ledger.json, suite.json
and its run directories), any folder of run directories, or run
directories themselves (a comma-separated list of any of these). The report
is read from the run directories and the ledger alone; nothing is trained
and TensorFlow is not imported.

Written to `--out`:

    index.html      one self-contained page: every figure a base64 PNG, the
                    style inline, no script, nothing fetched
    report.md       the same content, its figures as files:
    figures/NAME.png  and beside each  figures/NAME.csv  (the figure's data)

The report is an ordered list of sections (SECTIONS): each is a function of
the loaded inputs (`Inputs`: the runs, probes, the ledger) returning
`Section`s, or none when it has nothing to say. A new study adds its
section function to SECTIONS; the renderers need no change.

Tested by tests/analysis/test_report.py and tests/analysis/test_report_browser.py.
"""

import base64
import csv
import dataclasses
import datetime
import io
import math
import os
import sys
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from analysis import cli, figures, optimizers, schema, verdicts  # noqa: E402
from analysis.figures._common import first_nonfinite  # noqa: E402
from analysis.rundir import (  # noqa: E402
    LoadedProbe,
    RunDirError,
    is_probe,
    load_probe,
    load_run,
)

LEDGER_FILE = "ledger.json"  # trainers/suite.py writes these two
MANIFEST_FILE = "suite.json"
FIGURES_DIR = "figures"
HTML_FILE = "index.html"
MARKDOWN_FILE = "report.md"
DPI = 100


class ReportError(ValueError):
    """Unusable input; the message is one line."""


# ---------------------------------------------------------------------------
# The inputs: what the run directories and the ledger hold.


@dataclasses.dataclass
class Inputs:
    """Everything a section may use.

    `runs` maps a run's name (its directory name) to the loaded run or
    probe; `problems` maps the name of a run that could not be read, or that
    the ledger lists but is not on disk, to why.
    """

    roots: list
    runs: dict
    problems: dict
    ledger: dict | None = None
    manifest: dict | None = None

    def state(self, name: str) -> str:
        """One cell: how the run `name` ended, or why there is nothing."""
        if name in self.problems:
            return self.problems[name]
        run = self.runs.get(name)
        if run is None:
            return "missing: not run"
        return run_state(run)


def run_state(run) -> str:
    s = run.status
    if isinstance(run, LoadedProbe):
        return "measured (probe)"
    if s.state == "completed":
        return f"completed, step {s.step}" + (
            " (early stop)" if s.early_stopped else ""
        )
    if s.state == "diverged":
        step = (s.nonfinite or {}).get("step", s.step)
        return f"diverged at step {step} (non-finite {first_nonfinite(s)})"
    if s.state == "failed":
        return f"failed at step {s.step}: {s.message}"
    return f"running, step {s.step}"


def _is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, schema.CONFIG_FILE)) or is_probe(path)


def _load(path: str):
    return load_probe(path) if is_probe(path) else load_run(path)


def load_inputs(paths: list) -> Inputs:
    """Reads every run directory under `paths` (and a suite's ledger).

    Raises:
      ReportError: a path that is not a directory, or no run anywhere.
    """
    inputs = Inputs(roots=[], runs={}, problems={})
    for path in paths:
        root = os.path.abspath(os.path.expanduser(path))
        if not os.path.isdir(root):
            raise ReportError(f"--runs: {path} is not a directory")
        inputs.roots.append(root)
        if _is_run_dir(root):
            candidates = [root]
        else:
            candidates = [
                os.path.join(root, n)
                for n in sorted(os.listdir(root))
                if not n.startswith(".") and os.path.isdir(os.path.join(root, n))
            ]
            for name, attr in ((LEDGER_FILE, "ledger"), (MANIFEST_FILE, "manifest")):
                if os.path.isfile(os.path.join(root, name)) and len(paths) == 1:
                    try:
                        setattr(
                            inputs, attr, schema.read_json(os.path.join(root, name))
                        )
                    except (OSError, ValueError) as e:
                        raise ReportError(
                            f"{os.path.join(root, name)} is unreadable ({e})"
                        ) from None
        for candidate in candidates:
            name = os.path.basename(candidate)
            if name in inputs.runs or name in inputs.problems:
                name = os.path.relpath(candidate, os.path.dirname(root))
            if _is_run_dir(candidate):
                try:
                    inputs.runs[name] = _load(candidate)
                except RunDirError as e:
                    inputs.problems[name] = f"unreadable: {e}"
            elif os.path.isfile(os.path.join(candidate, schema.STATUS_FILE)):
                inputs.problems[name] = "unreadable: no config.json (failed at start?)"
    if inputs.ledger:
        for name in inputs.ledger.get("runs", {}):
            if name not in inputs.runs and name not in inputs.problems:
                inputs.problems[name] = "missing: not run"
    if not inputs.runs and not inputs.problems and not inputs.ledger:
        raise ReportError(
            f"--runs: no run directories (config.json or evidence.json) in "
            f"{', '.join(paths)}"
        )
    return inputs


# ---------------------------------------------------------------------------
# The content: sections of blocks, independent of HTML or Markdown.


@dataclasses.dataclass
class Text:
    text: str
    style: str = ""  # "", "note" or "strong"
    kind: str = "text"


@dataclasses.dataclass
class Table:
    columns: list
    rows: list  # lists of strings
    classes: list | None = None  # a CSS class per row (verdict colours)
    kind: str = "table"


@dataclasses.dataclass
class Plot:
    name: str  # file stem under figures/
    caption: str
    figure: object  # matplotlib Figure
    rows: list  # its data
    kind: str = "plot"


@dataclasses.dataclass
class Section:
    id: str
    title: str
    blocks: list
    level: int = 2


def num(v) -> str:
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, (int, float)):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return f"{v:.3g}"
    # JSON has no inf or nan: the ledger holds them as null (schema.dumps).
    return "non-finite" if v is None else str(v)


def summary_text(summary: dict) -> str:
    if not summary:
        return "no seed measured"
    return (
        f"{summary['value']} = {num(summary['median'])} "
        f"[{num(summary['min'])}, {num(summary['max'])}]"
    )


def reading(claim: dict) -> str:
    """The verdict against what the literature expects, said plainly."""
    verdict, expected = claim.get("verdict"), claim.get("expected", verdicts.HOLDS)
    if verdict not in (verdicts.HOLDS, verdicts.NOT_HOLD):
        return ""
    if verdict == expected:
        if expected == verdicts.NOT_HOLD:
            return "refuted, as the literature expects"
        return "agrees with the literature"
    return f"AGAINST THE LITERATURE (expected: {expected})"


_SHOWN_FIELDS = (
    "model",
    "depth",
    "width",
    "units",
    "activation",
    "initializer",
    "recurrent_initializer",
    "spectral_radius",
    "norm",
    "recurrent_l2",
    "task",
    "sequence_length",
    "optimizer",
    "learning_rate",
    "batch_size",
    "clipping",
    "clip_threshold",
    "num_steps",
)


def _fields(run) -> dict:
    if isinstance(run, LoadedProbe):
        return {"probe": run.name, **run.args}
    cfg = run.config
    flat = {**cfg.get("model_kwargs", {}), **cfg.get("task_kwargs", {}), **cfg}
    out = {k: flat[k] for k in _SHOWN_FIELDS if k in flat}
    if out.get("clipping") == "none":
        out.pop("clip_threshold", None)
    # Switched-off settings say nothing; "clipping=none" stays (C8, C9).
    return {
        k: v
        for k, v in out.items()
        if k == "clipping" or not (v is None or v == "none" or v == 0)
    }


def _kv(d: dict) -> str:
    return ", ".join(
        f"{k}={num(v) if isinstance(v, float) else v}" for k, v in d.items()
    )


def describe_experiment(arms: dict) -> str:
    """One line: what the arms share, then how each differs."""
    fields = {arm: _fields(run) for arm, run in arms.items() if run is not None}
    if not fields:
        return "no run on disk"
    keys = list(dict.fromkeys(k for f in fields.values() for k in f))
    common = {
        k: next(iter(fields.values()))[k]
        for k in keys
        if all(
            k in f and f[k] == next(iter(fields.values()))[k] for f in fields.values()
        )
    }
    parts = [_kv(common)] if common else []
    if len(fields) > 1 or not common:
        for arm, f in fields.items():
            diff = {k: v for k, v in f.items() if k not in common}
            parts.append(f"{arm}: {_kv(diff) or 'as above'}")
    return "; ".join(parts)


def _claim_arms(inputs: Inputs, claim: dict) -> tuple[dict, dict]:
    """({arm: [loaded runs over seeds]}, {seed: {arm: run name}})."""
    if claim.get("study"):  # runs by problem and optimizer: optimizer_study
        return {}, {}
    names = {int(s): arms for s, arms in claim.get("runs", {}).items()}
    arms: dict = {}
    for seed in sorted(names):
        for arm, name in names[seed].items():
            arms.setdefault(arm, [])
            if name in inputs.runs:
                arms[arm].append(inputs.runs[name])
    return arms, names


def claim_ledger(inputs: Inputs) -> list:
    """The first section: every claim, its numbers and its verdict."""
    if not inputs.ledger:
        return []
    claims = inputs.ledger.get("claims", [])
    counts: dict = {}
    for c in claims:
        counts[c.get("verdict")] = counts.get(c.get("verdict"), 0) + 1
    tally = ", ".join(f"{n} {v}" for v, n in counts.items())
    blocks = [
        Text(
            f"Suite '{inputs.ledger.get('suite')}' at scale "
            f"'{inputs.ledger.get('scale')}': {len(claims)} claims: {tally}. "
            "A claim holds when its criterion holds in a majority of seeds; "
            "numbers are the headline value's median [min, max] over seeds."
        )
    ]
    against = [c for c in claims if reading(c).startswith("AGAINST")]
    refuted = [c for c in claims if reading(c).startswith("refuted")]
    if against:
        blocks.append(
            Text(
                "Against the literature: "
                + "; ".join(
                    f"{c['id']} {c['verdict']} ({c['statement']})" for c in against
                )
                + ".",
                "strong",
            )
        )
    if refuted:
        blocks.append(
            Text(
                "Claims refuted here, as the literature expects: "
                + "; ".join(f"{c['id']} ({c['source']})" for c in refuted)
                + ".",
                "strong",
            )
        )
    rows, classes = [], []
    for c in claims:
        arms, names = _claim_arms(inputs, c)
        first = {arm: runs[0] if runs else None for arm, runs in arms.items()}
        experiment = (
            describe_experiment(first) + f"; {len(names)} seed{'s' * (len(names) != 1)}"
            if names
            else "not run"
        )
        if c.get("study"):
            study = c["study"]
            experiment = (
                f"a {study['budget']}-budget study of "
                f"{', '.join(study['problems'])}: defaults, a rate grid, the "
                "tuned rate over new seeds (section below)"
            )
        if c.get("note"):
            experiment += f". Scale note: {c['note']}"
        verdict = c.get("verdict", "?").upper()
        extra = reading(c)
        rows.append(
            [
                c["id"],
                f"{c['statement']} ({c['source']})",
                experiment,
                summary_text(c.get("summary") or {}),
                c.get("criterion") or "n/a",
                f"{verdict}{': ' + extra if extra else ''}. {c.get('reason', '')}",
            ]
        )
        classes.append(c.get("verdict", "").replace(" ", "-"))
    blocks.append(
        Table(
            [
                "Claim",
                "Statement (source)",
                "Experiment",
                "Measured: median [min, max]",
                "Criterion",
                "Verdict",
            ],
            rows,
            classes,
        )
    )
    return [Section("ledger", "Claim ledger", blocks)]


def figure_blocks(prefix: str, arms: dict) -> list:
    """Every kind of figure the runs have data for."""
    out = []
    for kind in figures.KINDS:
        rows = kind.rows(arms)
        if any("event" not in r for r in rows):
            out.append(
                Plot(f"{prefix}-{kind.name}", kind.caption, kind.draw(rows), rows)
            )
    return out


def claim_evidence(inputs: Inputs) -> list:
    """One section per claim that ran: its runs per seed, values, figures."""
    if not inputs.ledger:
        return []
    sections = []
    for c in inputs.ledger.get("claims", []):
        if c.get("verdict") == verdicts.PENDING or c.get("study"):
            continue  # a study has its own section (optimizer_study)
        arms, names = _claim_arms(inputs, c)
        arm_names = list(dict.fromkeys(a for s in names.values() for a in s))
        seeds = {s["seed"]: s for s in c.get("seeds", [])}
        rows = []
        for seed in sorted(names):
            s = seeds.get(seed, {})
            result = (
                ("holds" if s.get("holds") else "does not hold")
                if s.get("holds") is not None
                else f"no verdict: {s.get('problem', 'not judged')}"
            )
            values = ", ".join(
                f"{k} = {num(v)}" for k, v in (s.get("values") or {}).items()
            )
            rows.append(
                [str(seed)]
                + [
                    inputs.state(names[seed][a]) if a in names[seed] else ""
                    for a in arm_names
                ]
                + [result, values]
            )
        blocks = [
            Text(f"{c['statement'].rstrip('.')}. Source: {c['source']}."),
            Text(
                f"Verdict: {c.get('verdict', '?').upper()} ({c.get('reason', '')}). "
                f"Criterion: {c.get('criterion')}. "
                f"{summary_text(c.get('summary') or {})}."
                + (f" {reading(c)}." if reading(c) else ""),
                "strong",
            ),
        ]
        if c.get("calibration"):
            blocks.append(Text(f"Calibration: {c['calibration']}.", "note"))
        if c.get("note"):
            blocks.append(Text(f"At this scale: {c['note']}.", "note"))
        blocks.append(
            Table(
                ["seed"] + [f"run: {a}" for a in arm_names] + ["criterion", "values"],
                rows,
            )
        )
        present = {a: r for a, r in arms.items() if r}
        blocks += figure_blocks(c["id"], present)
        sections.append(Section(f"claim-{c['id']}", f"{c['id']}: evidence", blocks))
    return sections


def _final_eval(run) -> tuple[str, str]:
    if isinstance(run, LoadedProbe):
        keys = [k for k, v in run.values.items() if isinstance(v, (int, float))][:3]
        return ", ".join(f"{k} = {num(run.values[k])}" for k in keys), ""
    info = run.record.task_info
    metric = info.get("main_metric") or "loss"
    final = run.final_eval
    base = info.get("baselines", {})
    if final is None:
        return "no eval", ""
    shown = [
        f"{k} = {num(final.metrics.get(k))}"
        for k in ("loss", metric)
        if k in final.metrics
    ]
    return (
        f"step {final.step}: " + ", ".join(dict.fromkeys(shown)),
        ", ".join(
            dict.fromkeys(
                f"{k} = {num(base[k])}" for k in ("loss", metric) if k in base
            )
        ),
    )


def runs_overview(inputs: Inputs) -> list:
    """Without a ledger, the run table comes first."""
    return [] if inputs.ledger else _run_table(inputs)


def run_table(inputs: Inputs) -> list:
    """With a ledger, the run table comes last."""
    return _run_table(inputs) if inputs.ledger else []


def _run_table(inputs: Inputs) -> list:
    """Every run: what it is and how it ended, missing ones included."""
    names = sorted(set(inputs.runs) | set(inputs.problems))
    rows = []
    for name in names:
        run = inputs.runs.get(name)
        if run is None:
            rows.append([name, "", "", inputs.state(name), "", ""])
            continue
        final, base = _final_eval(run)
        what = (
            f"probe {run.name}"
            if isinstance(run, LoadedProbe)
            else f"{run.config.get('model')} (seed {run.config.get('seed')})"
        )
        task = "" if isinstance(run, LoadedProbe) else str(run.config.get("task"))
        rows.append([name, what, task, inputs.state(name), final, base])
    classes = [
        "problem"
        if (n in inputs.problems or "diverged" in r[3] or "failed" in r[3])
        else ""
        for n, r in zip(names, rows)
    ]
    return [
        Section(
            "runs",
            "Runs",
            [
                Text(
                    f"{len(names)} run directories: every figure is drawn from these."
                ),
                Table(
                    ["run", "what", "task", "state", "final eval", "task baseline"],
                    rows,
                    classes,
                ),
            ],
        )
    ]


def runs_compared(inputs: Inputs) -> list:
    """Without a ledger: the runs side by side, one arm each, per task."""
    if inputs.ledger:
        return []
    by_task: dict = {}
    for name, run in inputs.runs.items():
        key = "probes" if isinstance(run, LoadedProbe) else run.config.get("task", "?")
        by_task.setdefault(key, {})[name] = [run]
    sections = []
    for task, arms in sorted(by_task.items()):
        title = "Probes" if task == "probes" else f"Runs on {task}"
        blocks = [Text(describe_experiment({a: r[0] for a, r in arms.items()}))]
        blocks += figure_blocks(f"runs-{task}", arms)
        sections.append(Section(f"compare-{task}", title, blocks))
    return sections


_STUDY_COLUMNS = {
    "problem": "Problem",
    "optimizer": "Optimizer",
    "default": "Default (Keras rate)",
    "tuned_rate": "Tuned rate",
    "tuned_median": "Tuned: median",
    "tuned_min": "min",
    "tuned_max": "max",
    "seeds": "Seeds ended",
    "grad_first_last_100": "Gradient first/last, step 100",
    "update_first_last_100": "Update first/last, step 100",
}


def optimizer_study(inputs: Inputs) -> list:
    """C12's study (analysis/optimizers.py), when the ledger holds one."""
    study = optimizers.section(inputs.ledger or {})
    if study is None:
        return []
    rows = study.rows
    cells = []
    for r in rows:
        r = dict(r)
        if r["default_state"] != "completed":
            r["default"] = r["default_state"]  # diverged, failed, missing
        cells.append(["-" if r[k] is None else num(r[k]) for k in _STUDY_COLUMNS])
    blocks = [
        Text(study.text.split("\n", 1)[0], style="strong"),
        Table(list(_STUDY_COLUMNS.values()), cells),
    ]
    for name, fig in study.figures.items():
        problem = next(
            (p for p in {r["problem"] for r in rows} if name.startswith(p)), None
        )
        data = [r for r in rows if r["problem"] == problem] or rows
        blocks.append(Plot(f"optimizers-{name}", name.replace("_", " "), fig, data))
    return [Section("optimizers", study.title, blocks)]


# The report, in order. Each entry: (Inputs) -> list of Section.
SECTIONS: list[Callable] = [
    claim_ledger,
    runs_overview,
    claim_evidence,
    optimizer_study,
    runs_compared,
    run_table,
]


def build(inputs: Inputs, sections=None) -> list:
    out = []
    for make in sections or SECTIONS:
        out += make(inputs)
    return out


# ---------------------------------------------------------------------------
# Rendering: the same sections to HTML (figures inline) and Markdown (files).


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _csv(rows: list) -> str:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r.get(k) is None else r[k] for k in columns})
    return buf.getvalue()


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _environment():
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("analysis", "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["md_cell"] = _md_cell
    return env


def header(inputs: Inputs) -> tuple[str, str]:
    states: dict = {}
    for name in set(inputs.runs) | set(inputs.problems):
        s = inputs.state(name).split(" ")[0].rstrip(":,")
        states[s] = states.get(s, 0) + 1
    tally = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
    if inputs.ledger:
        title = f"gradzoo report: suite {inputs.ledger.get('suite')}"
    else:
        title = "gradzoo report"
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = (
        f"{sum(states.values())} runs ({tally}) in {', '.join(inputs.roots)}; "
        f"written {when}"
    )
    return title, subtitle


def render(inputs: Inputs, out_dir: str, sections=None) -> str:
    """Writes index.html, report.md and figures/ under `out_dir`; returns the
    path of index.html."""
    content = build(inputs, sections)
    title, subtitle = header(inputs)
    images, files = {}, {}
    for section in content:
        for block in section.blocks:
            if block.kind == "plot":
                png = _png(block.figure)
                images[block.name] = base64.b64encode(png).decode("ascii")
                files[f"{block.name}.png"] = png
                files[f"{block.name}.csv"] = _csv(block.rows).encode()
    env = _environment()
    context = dict(
        title=title,
        subtitle=subtitle,
        sections=content,
        images=images,
        figures_dir=FIGURES_DIR,
    )
    html = env.get_template("report.html.j2").render(**context)
    markdown = env.get_template("report.md.j2").render(**context)
    figures_path = os.path.join(out_dir, FIGURES_DIR)
    os.makedirs(figures_path, exist_ok=True)
    for name, data in files.items():
        schema.write_bytes(os.path.join(figures_path, name), data)
    for name in os.listdir(figures_path):  # a previous report's leftovers
        if name not in files and name.endswith((".png", ".csv")):
            os.remove(os.path.join(figures_path, name))
    schema.write_text(os.path.join(out_dir, MARKDOWN_FILE), markdown)
    schema.write_text(os.path.join(out_dir, HTML_FILE), html)
    return os.path.join(out_dir, HTML_FILE)


def write_report(runs: list, out_dir: str, sections=None) -> str:
    """Reads `runs`, writes the report to `out_dir`; returns index.html's path.

    Raises:
      ReportError: unusable input, before anything is written.
    """
    out_dir = os.path.abspath(os.path.expanduser(out_dir))
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ReportError(f"--out: {out_dir} exists and is not a directory")
    inputs = load_inputs(list(runs))
    if any(
        os.path.samefile(out_dir, r) for r in inputs.roots if os.path.exists(out_dir)
    ):
        raise ReportError(
            f"--out: {out_dir} is a --runs folder; name a folder for the report"
        )
    return render(inputs, out_dir, sections)


_RUNS = flags.DEFINE_list(
    "runs",
    [],
    "A suite's folder, a folder of run directories, or run directories "
    "(comma-separated).",
)
_OUT = flags.DEFINE_string("out", None, "The report's folder.")


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not _RUNS.value:
        cli.fail("--runs is required")
    if not _OUT.value:
        cli.fail("--out is required")
    import matplotlib

    matplotlib.use("Agg")
    try:
        path = write_report(_RUNS.value, _OUT.value)
    except ReportError as e:
        cli.fail(e)
    except OSError as e:
        sys.stderr.write(f"error: cannot write the report: {e.strerror or e}\n")
        sys.exit(cli.EXIT_ERROR)
    print(f"report: {path}")
    print(f"markdown: {os.path.join(os.path.dirname(path), MARKDOWN_FILE)}")


def run_main():
    """Console-script entry point (gradzoo-report)."""
    app.run(main, flags_parser=cli.parse_flags)


if __name__ == "__main__":
    run_main()
