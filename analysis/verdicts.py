"""From run directories to a claim's verdict: the rules, not the claims.

A claim (analysis/claims.py) names its runs per seed, a measurement over
them and a criterion. This module reads the runs, applies the measurement
and the criterion seed by seed, and combines the seeds:

- a seed whose runs are all readable and ended (completed, or diverged
  where the claim declares divergence a result) gets values and a
  holds / does not hold;
- a seed with a missing, running, failed or unreadable run, or a diverged
  one the claim did not expect, gets no values and a problem instead;
- the claim holds when the criterion holds in at least `need` seeds (2 of
  3 unless declared otherwise), does not hold when it fails in at least
  `need` seeds, and is inconclusive otherwise, with the reason: missing,
  running, failed or diverged runs, or the spread of the seeds (2 of 4
  each way).

    >>> verdict = judge(claim, scale="quick", seeds=[0, 1, 2], run_paths=...)

Tested by tests/analysis/test_verdicts.py.
"""

import dataclasses
import json
import math
import os
import statistics

from analysis import schema
from analysis.rundir import load_run
from analysis.schema import RunDirError

EVIDENCE_FILE = schema.EVIDENCE_FILE  # what a probe (analysis/probes.py) measured

HOLDS, NOT_HOLD, INCONCLUSIVE, PENDING = (
    "holds",
    "does not hold",
    "inconclusive",
    "pending",
)


class RunProblem(Exception):
    """A run that cannot be measured; the message says why (one line)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind  # "missing", "failed", "diverged", "running"


@dataclasses.dataclass(frozen=True)
class Evidence:
    """One arm's run of one seed, as the measurement sees it.

    `run` is the loaded run directory of a training run (analysis/rundir.py;
    of a pretraining run, its fine-tuning phase); `values` the
    evidence.json of a probe. `state` is the status' state.
    """

    path: str
    state: str
    step: int
    message: str
    run: object = None  # LoadedRun for training runs
    values: dict | None = None  # evidence.json for probes


def read_evidence(path: str, *, diverged_ok: bool = False) -> Evidence:
    """The arm's run at `path`, or a RunProblem naming what is wrong with it."""
    if not os.path.isdir(path):
        raise RunProblem("missing", f"{os.path.basename(path)}: not run")
    probe = os.path.join(path, EVIDENCE_FILE)
    if os.path.exists(probe):
        try:
            values = schema.read_json(probe)
        except (OSError, ValueError) as e:
            raise RunProblem("missing", f"{probe} unreadable ({e})") from None
        return Evidence(path, "completed", 0, "probe", values=values)
    try:
        run = load_run(path)
    except RunDirError as e:
        raise RunProblem("missing", str(e)) from None
    s = run.status
    name = os.path.basename(path)
    if s.state == "running":
        raise RunProblem("running", f"{name}: still running at step {s.step}")
    if s.state == "failed":
        raise RunProblem("failed", f"{name}: failed at step {s.step}: {s.message}")
    if s.state == "diverged" and not diverged_ok:
        raise RunProblem("diverged", f"{name}: diverged at step {s.step}: {s.message}")
    if run.record.pretraining is not None:
        # A pretraining run: the status is the whole run's, the numbers are
        # the fine-tuning phase's (comparable with a run from scratch).
        try:
            run = load_run(os.path.join(path, schema.FINETUNE_DIR))
        except RunDirError as e:
            raise RunProblem("missing", str(e)) from None
    return Evidence(path, s.state, s.step, s.message, run=run)


@dataclasses.dataclass(frozen=True)
class SeedResult:
    seed: int
    values: dict | None  # measured values; None with a problem
    holds: bool | None
    problem: str | None = None
    problem_kind: str | None = None

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ClaimVerdict:
    """A claim's verdict and the numbers behind it."""

    verdict: str
    reason: str
    seeds: list  # SeedResult
    summary: dict  # primary value: {median, min, max} over measured seeds

    def to_json(self) -> dict:
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "seeds": [s.to_json() for s in self.seeds],
            "summary": self.summary,
        }


def judge_seed(claim, seed: int, paths: dict) -> SeedResult:
    """Measures one seed: `paths` maps each arm to its run directory."""
    try:
        evidence = {
            arm: read_evidence(path, diverged_ok=arm in claim.diverged_ok)
            for arm, path in paths.items()
        }
    except RunProblem as p:
        return SeedResult(seed, None, None, str(p), p.kind)
    try:
        values = claim.measure(evidence)
    except (KeyError, ValueError, IndexError, ZeroDivisionError, AttributeError) as e:
        return SeedResult(seed, None, None, f"not measurable: {e}", "missing")
    return SeedResult(seed, values, claim.criterion.holds(values))


def combine(claim, results: list) -> ClaimVerdict:
    """The seeds' results -> the claim's verdict (see the module docstring)."""
    need = claim.need(len(results))
    measured = [r for r in results if r.holds is not None]
    held = sum(r.holds for r in measured)
    failed = len(measured) - held
    primary = claim.criterion.primary
    numbers = [
        r.values[primary]
        for r in measured
        if isinstance(r.values.get(primary), (int, float))
        and not math.isnan(r.values[primary])
    ]
    summary = {}
    if numbers:
        summary = {
            "value": primary,
            "median": statistics.median(numbers),
            "min": min(numbers),
            "max": max(numbers),
        }
    tally = f"criterion held in {held} of {len(results)} seeds (needs {need})"
    if held >= need:
        return ClaimVerdict(HOLDS, tally, results, summary)
    if failed >= need:
        return ClaimVerdict(NOT_HOLD, tally, results, summary)
    problems = sorted({r.problem_kind for r in results if r.problem_kind})
    if problems:
        kinds = ", ".join(f"{k} runs" for k in problems)
        first = next(r.problem for r in results if r.problem)
        reason = f"{kinds}: {tally}; e.g. {first}"
    else:
        reason = f"spread: {tally}"
    return ClaimVerdict(INCONCLUSIVE, reason, results, summary)


def write_ledger(path: str, ledger: dict) -> None:
    """Writes the suite's ledger atomically. A measured value may be
    infinite (an unclipped run's spike) or NaN: they are written as the
    strings "inf", "-inf" and "nan" (schema.nonfinite_as_text), not as null,
    which stays "no value"."""
    text = json.dumps(
        schema.nonfinite_as_text(ledger), allow_nan=False, indent=2, sort_keys=True
    )
    schema.write_text(path, text + "\n")


def read_ledger(path: str) -> dict:
    """A ledger as `write_ledger` wrote it, its numbers as floats again (the
    per-seed values and each claim's summary)."""
    ledger = schema.read_json(path)
    for c in ledger.get("claims", []):
        c["summary"] = schema.nonfinite_from_text(c.get("summary"))
        for s in c.get("seeds", []):
            s["values"] = schema.nonfinite_from_text(s.get("values"))
    return ledger


def judge(claim, seed_paths: dict) -> ClaimVerdict:
    """`seed_paths`: {seed: {arm: run directory}} -> the claim's verdict."""
    if claim.pending:
        return ClaimVerdict(PENDING, claim.pending, [], {})
    results = [judge_seed(claim, s, paths) for s, paths in sorted(seed_paths.items())]
    return combine(claim, results)
