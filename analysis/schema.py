"""The run-directory schema: file names, format version, row types, JSON I/O.

One home for the contract between the writer (trainers/writer.py and the
loop) and every reader (analysis/rundir.py, the suite, the report):

    <run_dir>/flags.txt                  resolved flags, replayable (--flagfile)
    <run_dir>/config.json                RunRecord: format + resolved config + facts
    <run_dir>/status.json                Status: state, step, message, owner
    <run_dir>/metrics.jsonl              MetricsRow per logging step
    <run_dir>/eval.jsonl                 EvalRow per evaluation (step 0 included)
    <run_dir>/gradient_through_time.jsonl  TemporalRow per logging step (opt-in)
    <run_dir>/ckpt/ tb/ model.keras      checkpoints, TensorBoard, final model
    <run_dir>/log.txt                    the command line's full log

A probe (analysis/probes.py, a measurement that needs no training) writes
a smaller directory: probe.json (its name, seed and arguments),
evidence.json (what it measured) and status.json.

A pretraining run (trainers/pretrain.py) is a run directory of run
directories: its own config.json (the fine-tuning RunConfig, plus the
`pretraining` settings) and status.json (which phase, and how it ended),
and one ordinary run directory per phase, each recording its `phase`:

    <run_dir>/pretrain_block00/ ...      hidden layer 0 as an autoencoder
    <run_dir>/pretrain_blockNN/          one per pretrained layer, in order
    <run_dir>/finetune/                  the whole net on the task

Version policy: FORMAT names what this code writes. A change that a reader of
the previous format would misread bumps it, and `RunRecord.from_json` /
`Status.from_json` keep reading every format in READABLE_FORMATS, filling
what an older writer did not record with what that writer did. From
gradzoo-run-1 to gradzoo-run-2: status.json gained `owner` (absent: no live
owner, the run is resumable) and config.json gained `depth_axis` (absent:
None; readers fall back to analysis.gradients.legacy_depth_axis) and `recipe`.
Still gradzoo-run-2, metrics.jsonl rows gained `update_norms` and
`update_ratios`: optional (older rows read as {}), and a reader from before
them refuses such a row as a bad row (a dict where it expects a number)
rather than misreading it.

Every JSON document is written to a temporary file and renamed, and every
JSONL row is appended as one whole line, so a crash or a kill never leaves a
half-written document; a torn last JSONL line (a kill mid-append) is skipped
with a warning on reading.

Tested by tests/trainers/test_writer.py (JSONL rows),
tests/trainers/test_hardening.py (malformed files) and
tests/analysis/test_run1_fixture.py (gradzoo-run-1 directories).
"""

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Mapping

from absl import logging

FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
# Written only by runs with log_gradient_through_time.
TEMPORAL_FILE = "gradient_through_time.jsonl"
# A probe's directory (analysis/probes.py: a measurement without training):
# what was measured and with which arguments, beside its status.json.
EVIDENCE_FILE = "evidence.json"
PROBE_FILE = "probe.json"
CKPT_DIR = "ckpt"
TB_DIR = "tb"
MODEL_FILE = "model.keras"
# The command line's full log (libraries' lines too); the terminal shows less.
LOG_FILE = "log.txt"
# Everything a run writes: resume keeps it, --overwrite removes only these.
RUN_FILES = (
    FLAGS_FILE,
    CONFIG_FILE,
    STATUS_FILE,
    METRICS_FILE,
    EVAL_FILE,
    TEMPORAL_FILE,
    CKPT_DIR,
    TB_DIR,
    MODEL_FILE,
    LOG_FILE,
)
JSONL_FILES = (METRICS_FILE, EVAL_FILE, TEMPORAL_FILE)
# The phase directories of a pretraining run (see the module docstring).
PRETRAIN_DIR_PREFIX = "pretrain_"
FINETUNE_DIR = "finetune"


def pretrain_dir(block_prefix: str) -> str:
    """The phase directory of one pretrained layer: "pretrain_block03"."""
    return PRETRAIN_DIR_PREFIX + block_prefix


def is_run_file(name: str) -> bool:
    """Whether `name` in a run directory is the run's own (--overwrite may
    remove it): a RUN_FILES entry or a pretraining run's phase directory."""
    return (
        name in RUN_FILES
        or name == FINETUNE_DIR
        or name.startswith(PRETRAIN_DIR_PREFIX)
    )


# Temporary files of the atomic writes start with this (specific enough that
# --overwrite never takes a user's file for one of ours).
TMP_PREFIX = ".tmp-gradzoo-"

# config.json carries FORMAT_KEY: only a directory whose config.json names a
# readable format is a gradzoo run, which resume may continue and
# --overwrite may clear.
FORMAT_KEY = "format"
FORMAT = "gradzoo-run-2"
READABLE_FORMATS = ("gradzoo-run-1", FORMAT)

STATES = ("running", "completed", "diverged", "failed")


class RunDirError(ValueError):
    """A run directory cannot be used or read; the message says why."""


# ---------------------------------------------------------------------------
# JSON I/O


def _finite_or_none(value):
    """JSON has no NaN or Infinity: non-finite numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def dumps(obj, **kwargs) -> str:
    """json.dumps with non-finite numbers as null (JSON has no NaN)."""
    return json.dumps(_finite_or_none(obj), allow_nan=False, **kwargs)


# Where a non-finite number is a result, not a missing one (the suite's
# ledger: an unclipped run's gradient spike is inf), it is written as one of
# these strings, which JSON can hold and every reader can tell from null.
NONFINITE_TEXT = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def nonfinite_as_text(value):
    """`value` with every non-finite float replaced by "inf", "-inf" or "nan"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: nonfinite_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [nonfinite_as_text(v) for v in value]
    return value


def nonfinite_from_text(numbers: Mapping | None) -> dict | None:
    """A mapping of numbers written by `nonfinite_as_text`, read back: the
    strings "inf", "-inf" and "nan" as floats, everything else as it is."""
    if numbers is None:
        return None
    return {
        k: NONFINITE_TEXT[v] if isinstance(v, str) and v in NONFINITE_TEXT else v
        for k, v in numbers.items()
    }


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


_UMASK = _umask()


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; be an ordinary file
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=TMP_PREFIX)
    try:
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path: str, obj) -> None:
    write_text(path, dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str):
    """A JSON document; bytes that are not UTF-8 are a ValueError."""
    with open(path, "rb") as f:
        return json.loads(f.read().decode("utf-8"))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(d: Mapping, key: str, *, optional: bool = True):
    """d[key] as a float (None stays None where allowed), or ValueError."""
    value = d.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"field {key!r} must be a number, not {value!r}")
    return float(value)


def _mapping(d: Mapping, key: str) -> dict:
    value = d.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"field {key!r} must be an object, not {value!r}")
    return dict(value)


def append_jsonl(path: str, row: Mapping) -> None:
    """Appends one row as one line, in a single write."""
    with open(path, "a") as f:
        f.write(dumps(row) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSONL file ([] if it does not exist).

    A torn last line (no newline: the writer was killed mid-append) is
    dropped with a warning; any other unreadable line is an error.

    Raises:
      RunDirError: naming the file and line.
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError as e:  # a directory, no permission, ...
        raise RunDirError(f"{path} cannot be read ({e.strerror or e})") from None
    torn = lines.pop()  # b"" when the file ends with a newline
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError:
            raise RunDirError(f"{path} line {number} is not UTF-8 text") from None
        except ValueError:
            raise RunDirError(
                f"{path} line {number} is not valid JSON: {line[:60]!r}"
            ) from None
        if not isinstance(row, dict) or not _is_int(row.get("step")):
            raise RunDirError(
                f"{path} line {number} is not a row with an integer step: {line[:60]!r}"
            )
        rows.append(row)
    if torn:
        logging.warning(
            "%s: ignoring a torn last line (line %d, %d bytes)",
            path,
            len(lines) + 1,
            len(torn),
        )
    return rows


def truncate_jsonl(path: str, last_step: int) -> None:
    """Keeps rows with step <= last_step (a resume replays the steps after)."""
    if os.path.exists(path):
        rows = [r for r in read_jsonl(path) if r["step"] <= last_step]
        write_text(path, "".join(dumps(r) + "\n" for r in rows))


# ---------------------------------------------------------------------------
# Row types. Each has to_json() -> dict and from_json(dict), the shape on disk.


def _split(d: Mapping, known) -> tuple[dict, dict]:
    return {k: d[k] for k in known if k in d}, {
        k: v for k, v in d.items() if k not in known
    }


@dataclasses.dataclass(frozen=True)
class Owner:
    """The process that writes a run directory.

    On the owner's host, liveness is decided by the lock the owner holds on
    the directory (trainers/writer.py); from another host (a shared
    filesystem) by the heartbeat, which the loop renews at least at every
    logging step.
    """

    pid: int
    host: str
    heartbeat: float  # Unix time of the owner's last sign of life

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "Owner":
        return cls(int(d["pid"]), str(d["host"]), float(d["heartbeat"]))


@dataclasses.dataclass(frozen=True)
class Status:
    """status.json: where the run is, and why.

    `step` is the step of the newest weights on disk (a checkpoint or
    model.keras); `nonfinite` is None, or {step, loss_finite, variables,
    weights} of the first non-finite value of a diverged run.
    """

    state: str
    step: int
    message: str
    nonfinite: dict | None = None
    early_stopped: bool = False
    updated: float = 0.0
    owner: Owner | None = None

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["owner"] = self.owner.to_json() if self.owner else None
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "Status":
        """Raises ValueError naming the field that is missing or malformed."""
        if not isinstance(d, Mapping):
            raise ValueError(f"expected an object, not {type(d).__name__}")
        if d.get("state") not in STATES:
            raise ValueError(f"field 'state' {d.get('state')!r} is not one of {STATES}")
        if not _is_int(d.get("step")):
            raise ValueError(f"field 'step' must be an integer, not {d.get('step')!r}")
        owner = d.get("owner")
        if owner is not None and not isinstance(owner, Mapping):
            raise ValueError(f"field 'owner' must be an object, not {owner!r}")
        return cls(
            state=d["state"],
            step=d["step"],
            message=str(d.get("message", "")),
            nonfinite=d.get("nonfinite"),
            early_stopped=bool(d.get("early_stopped", False)),
            updated=_number(d, "updated") or 0.0,
            owner=Owner.from_json(owner) if owner else None,
        )


# config.json keys beside the RunConfig fields (which trainers/config.py
# owns: the schema stores them as a plain dict).
RECORD_FACTS = (
    FORMAT_KEY,
    "num_replicas",
    "task_info",
    "num_parameters",
    "depth_axis",
    "worker",
    "versions",
    "pretraining",
    "phase",
)


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """config.json: the resolved config and the facts of the built run.

    `config` holds the RunConfig fields as JSON; `depth_axis` lists the
    [position, variable path] pairs the model declared as its depth axis
    (zoo.depth_axis), or None for a gradzoo-run-1 record.
    """

    config: dict
    num_replicas: int
    task_info: dict
    num_parameters: int
    versions: dict
    depth_axis: list | None = None
    # multi_worker runs only: {"task": "worker:1", "chief": false}.
    worker: dict | None = None
    # Pretraining runs only (trainers/pretrain.py). The top directory: the
    # pretraining settings (PretrainConfig without its RunConfig, which is
    # `config`). A phase directory: {"name": "pretrain_block00" or
    # "finetune", ...} saying what the phase trained and from what.
    pretraining: dict | None = None
    phase: dict | None = None
    format: str = FORMAT

    def to_json(self) -> dict:
        """Flat on disk: the config fields next to the facts (as in run-1)."""
        d = {
            FORMAT_KEY: self.format,
            **self.config,
            "num_replicas": self.num_replicas,
            "task_info": self.task_info,
            "num_parameters": self.num_parameters,
            "depth_axis": self.depth_axis,
            "versions": self.versions,
        }
        for key in ("worker", "pretraining", "phase"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        return d

    @classmethod
    def from_json(cls, d: Mapping) -> "RunRecord":
        """Reads any readable format; an older one is restated as today's.

        Raises:
          RunDirError: not a gradzoo record, or a format this code cannot read.
        """
        if not isinstance(d, Mapping) or FORMAT_KEY not in d:
            raise RunDirError(f"not a gradzoo run record (no {FORMAT_KEY!r} key)")
        if d[FORMAT_KEY] not in READABLE_FORMATS:
            raise RunDirError(
                f"unknown run format {d[FORMAT_KEY]!r}; this gradzoo reads "
                f"{', '.join(READABLE_FORMATS)} (a newer gradzoo wrote it?)"
            )
        facts, config = _split(d, RECORD_FACTS)
        task_info = _mapping(facts, "task_info")
        for key in ("main_metric",):
            if key in task_info and not isinstance(task_info[key], str):
                raise RunDirError(f"field 'task_info.{key}' must be a string")
        if not isinstance(task_info.get("baselines", {}), Mapping):
            raise RunDirError("field 'task_info.baselines' must be an object")
        axis = facts.get("depth_axis")
        if axis is not None and not (
            isinstance(axis, list)
            and all(
                isinstance(e, list)
                and len(e) == 2
                and _is_int(e[0])
                and isinstance(e[1], str)
                for e in axis
            )
        ):
            raise RunDirError("field 'depth_axis' must be a list of [position, path]")
        try:
            return cls(
                config=config,
                num_replicas=int(_number(facts, "num_replicas") or 1),
                task_info=task_info,
                num_parameters=int(_number(facts, "num_parameters") or 0),
                versions=_mapping(facts, "versions"),
                depth_axis=axis,
                worker=facts.get("worker"),
                pretraining=facts.get("pretraining"),
                phase=facts.get("phase"),
                format=facts[FORMAT_KEY],
            )
        except ValueError as e:
            raise RunDirError(str(e)) from None


_METRICS_FIELDS = (
    "step",
    "wall_time",
    "window_steps",
    "steps_per_second",
    "learning_rate",
    "loss",
    "penalty",
    "grad_global_norm",
    "grad_norms",
    "update_norms",
    "update_ratios",
)


@dataclasses.dataclass(frozen=True)
class MetricsRow:
    """metrics.jsonl: one row per logging step.

    Loss, penalty and `metrics` (the task's, e.g. accuracy) are averaged
    over the `window_steps` steps since the previous row; the learning rate
    and the gradient norms (before clipping, None where non-finite) are
    those of `step` itself, as are `update_norms` (||w_new - w_old|| of
    the update applied at `step`, per variable; 0 where it was skipped)
    and `update_ratios` (||w_new - w_old|| / ||w_old||, None where the
    weights were all zero). Rows written before gradzoo logged updates
    have neither: they read as {}.
    """

    step: int
    wall_time: float
    window_steps: int
    steps_per_second: float
    learning_rate: float | None
    loss: float | None
    penalty: float | None
    grad_global_norm: float | None
    grad_norms: dict
    metrics: dict = dataclasses.field(default_factory=dict)
    update_norms: dict = dataclasses.field(default_factory=dict)
    update_ratios: dict = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        return {**{k: d[k] for k in _METRICS_FIELDS}, **self.metrics}

    @classmethod
    def from_json(cls, d: Mapping) -> "MetricsRow":
        """Raises ValueError naming a malformed field (non-finite values are
        null on disk and None here)."""
        known, metrics = _split(d, _METRICS_FIELDS)
        norms, updates, ratios = (
            _mapping(known, k) for k in ("grad_norms", "update_norms", "update_ratios")
        )
        for mapping in (norms, updates, ratios):
            for path in mapping:
                mapping[path] = _number(mapping, path)
        for name in metrics:
            metrics[name] = _number(metrics, name)
        return cls(
            step=d["step"],
            wall_time=_number(d, "wall_time"),
            window_steps=int(_number(d, "window_steps") or 1),
            steps_per_second=_number(d, "steps_per_second"),
            learning_rate=_number(d, "learning_rate"),
            loss=_number(d, "loss"),
            penalty=_number(d, "penalty"),
            grad_global_norm=_number(d, "grad_global_norm"),
            grad_norms=norms,
            metrics=metrics,
            update_norms=updates,
            update_ratios=ratios,
        )


@dataclasses.dataclass(frozen=True)
class EvalRow:
    """eval.jsonl: mean loss and task metrics over the eval split at `step`."""

    step: int
    wall_time: float
    metrics: dict  # "loss" and the task's metrics (accuracy, mse, ...)

    def to_json(self) -> dict:
        return {"step": self.step, "wall_time": self.wall_time, **self.metrics}

    @classmethod
    def from_json(cls, d: Mapping) -> "EvalRow":
        known, metrics = _split(d, ("step", "wall_time"))
        for name in metrics:
            metrics[name] = _number(metrics, name)
        return cls(known["step"], _number(known, "wall_time"), metrics)


@dataclasses.dataclass(frozen=True)
class TemporalRow:
    """gradient_through_time.jsonl: ||dL/dh_t|| and ||dL/dx_t|| over t = 1..T."""

    step: int
    wall_time: float
    layer: str
    input_ratio: float | None
    state_ratio: float | None
    decay_rate: float | None
    input_grad_norms: list
    state_grad_norms: list

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: Mapping) -> "TemporalRow":
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{k: d.get(k) for k in names})
