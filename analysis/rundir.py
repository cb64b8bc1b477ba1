"""Reading run directories, with the schema in analysis/schema.py.

Analysis reads run directories, never the trainer's memory. Directories of
every readable format load (a gradzoo-run-1 directory is restated in
today's terms by the schema's row types).

    >>> run = load_run("runs/x")
    >>> run.status.state, run.final_eval.metrics, run.metrics[-1].grad_norms
    >>> probe = load_probe("runs/quick/probe-edge_of_chaos-s0-...")
    >>> probe.name, probe.args, probe.values["log10_ratio"]

Tested by tests/analysis/test_compare.py, tests/analysis/test_run1_fixture.py
and tests/analysis/test_report.py (probes).
"""

import dataclasses
import os

from analysis import schema
from analysis.schema import RunDirError


@dataclasses.dataclass(frozen=True)
class LoadedRun:
    """One run directory, read into typed rows."""

    path: str
    record: schema.RunRecord
    status: schema.Status
    metrics: list[schema.MetricsRow]  # in step order
    evals: list[schema.EvalRow]  # in step order
    # Empty unless the run had log_gradient_through_time.
    gradient_through_time: list[schema.TemporalRow] = dataclasses.field(
        default_factory=list
    )

    @property
    def config(self) -> dict:
        """The resolved RunConfig fields, as config.json stores them."""
        return self.record.config

    @property
    def depth_axis(self) -> list | None:
        """[position, variable path] pairs of the model's depth axis.

        As recorded in config.json; for a gradzoo-run-1 directory, which
        recorded none, the old naming rule over the logged variables
        (analysis.gradients.legacy_depth_axis); None without either.
        """
        if self.record.depth_axis is not None:
            return self.record.depth_axis
        if self.metrics and self.metrics[0].grad_norms:
            from analysis import gradients

            return [
                list(e) for e in gradients.legacy_depth_axis(self.metrics[0].grad_norms)
            ]
        return None

    @property
    def final_eval(self) -> schema.EvalRow | None:
        return self.evals[-1] if self.evals else None


def _read_json(path):
    try:
        return schema.read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing: not a gradzoo run directory?") from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} is unreadable ({e})") from None


def _rows(path, row_type):
    rows = []
    for number, d in enumerate(schema.read_jsonl(path), start=1):
        try:
            rows.append(row_type.from_json(d))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise RunDirError(f"{path} line {number}: bad row ({e})") from None
    return rows


def load_run(path: str) -> LoadedRun:
    """Reads a run directory.

    Raises:
      RunDirError: a missing or unreadable file, named with its line.
    """
    if not os.path.isdir(path):
        raise RunDirError(f"{path} is not a directory")
    join = os.path.join
    config_path, status_path = (
        join(path, schema.CONFIG_FILE),
        join(path, schema.STATUS_FILE),
    )
    try:
        record = schema.RunRecord.from_json(_read_json(config_path))
    except RunDirError as e:
        raise RunDirError(f"{config_path}: {e}") from None
    try:
        status = schema.Status.from_json(_read_json(status_path))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, RunDirError):
            raise
        raise RunDirError(f"{status_path}: bad status ({e})") from None
    return LoadedRun(
        path=path,
        record=record,
        status=status,
        metrics=_rows(join(path, schema.METRICS_FILE), schema.MetricsRow),
        evals=_rows(join(path, schema.EVAL_FILE), schema.EvalRow),
        gradient_through_time=_rows(
            join(path, schema.TEMPORAL_FILE), schema.TemporalRow
        ),
    )


@dataclasses.dataclass(frozen=True)
class LoadedProbe:
    """A probe's directory (analysis/probes.py): a measurement at init."""

    path: str
    name: str  # the probe function, e.g. "edge_of_chaos"
    seed: int
    args: dict  # the arguments it was called with (its defaults not included)
    values: dict  # evidence.json
    status: schema.Status


def is_probe(path: str) -> bool:
    return os.path.isfile(os.path.join(path, schema.EVIDENCE_FILE))


def load_probe(path: str) -> LoadedProbe:
    """Reads a probe's directory.

    Raises:
      RunDirError: a missing or unreadable file.
    """
    join = os.path.join
    values = _read_json(join(path, schema.EVIDENCE_FILE))
    spec = _read_json(join(path, schema.PROBE_FILE))
    if not isinstance(values, dict) or not isinstance(spec, dict):
        raise RunDirError(f"{path}: evidence.json and probe.json must be objects")
    try:
        status = schema.Status.from_json(_read_json(join(path, schema.STATUS_FILE)))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, RunDirError):
            raise
        raise RunDirError(f"{path}: bad status ({e})") from None
    args = {k: v for k, v in spec.items() if k not in ("probe", "seed")}
    return LoadedProbe(
        path, str(spec.get("probe")), int(spec.get("seed", 0)), args, values, status
    )
