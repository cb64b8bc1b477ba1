"""Writing the run directory (the contract in ARCHITECTURE.md).

Every JSON document is written to a temporary file and renamed, and every
JSONL row is appended as one whole line, so a crash or a kill never leaves a
half-written file behind. analysis/rundir.py reads what this writes.

Tested by tests/trainers/test_runner.py.
"""

import json
import math
import os
import shutil
import tempfile
import time

from absl import logging

FLAGS_FILE = "flags.txt"
CONFIG_FILE = "config.json"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.jsonl"
# Written only by runs with log_gradient_through_time: one row per logging step.
TEMPORAL_FILE = "gradient_through_time.jsonl"
CKPT_DIR = "ckpt"
TB_DIR = "tb"
MODEL_FILE = "model.keras"

_UMASK = os.umask(0o22)
os.umask(_UMASK)

STATES = ("running", "completed", "diverged", "failed")

# Config keys that say where things are, not what is trained: a run may be
# resumed with them changed.
LOCATION_KEYS = ("data_dir", "versions")


class RunDirError(ValueError):
    """The output directory cannot be used as asked; the message says why."""


def _finite_or_none(value):
    """JSON has no NaN or Infinity: non-finite numbers are written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    return value


def _dumps(obj, **kwargs) -> str:
    return json.dumps(_finite_or_none(obj), allow_nan=False, **kwargs)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
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


def write_json(path: str, obj) -> None:
    write_text(path, _dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def append_jsonl(path: str, row: dict) -> None:
    """Appends one row as one line, in a single write."""
    with open(path, "a") as f:
        f.write(_dumps(row) + "\n")


def read_jsonl(path: str) -> list[dict]:
    """The rows of a JSONL file.

    A torn last line (no newline: the writer was killed mid-append) is
    dropped with a warning; any other unreadable line is an error.

    Raises:
      RunDirError: naming the file and line.
    """
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    torn = lines.pop()  # "" when the file ends with a newline
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise RunDirError(
                f"{path} line {number} is not valid JSON: {line[:60]!r}"
            ) from None
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
        write_text(path, "".join(_dumps(r) + "\n" for r in rows))


def write_status(
    run_dir: str, state: str, step: int, message: str, nonfinite=None, **extra
):
    """status.json: the state, the step of the weights on disk, and why."""
    if state not in STATES:
        raise ValueError(f"Unknown run state {state!r}; known: {STATES}")
    write_json(
        os.path.join(run_dir, STATUS_FILE),
        {
            "state": state,
            "step": step,
            "message": message,
            "nonfinite": nonfinite,
            "updated": time.time(),
            **extra,
        },
    )


# config.json carries this marker: only a directory whose config.json has it
# is a gradzoo run, which resume may continue and --overwrite may clear.
FORMAT_KEY = "format"
FORMAT = "gradzoo-run-1"
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
)


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two configs, ignoring locations.

    `new` is compared as it will read back from JSON (tuples become lists,
    non-finite numbers null), so an identical re-run is never refused.
    """
    new = json.loads(_dumps(new))
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in LOCATION_KEYS or old.get(key) == new.get(key):
            continue
        diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return diffs


def _read_run_config(run_dir: str) -> dict | None:
    """The config of the gradzoo run in `run_dir`, or None if it holds none."""
    try:
        old = read_json(os.path.join(run_dir, CONFIG_FILE))
    except (OSError, ValueError):
        return None
    if isinstance(old, dict) and old.get(FORMAT_KEY) == FORMAT:
        return old
    return None


def _clear_run(run_dir: str) -> None:
    """Removes the run's own files only; anything else in run_dir stays."""
    for name in os.listdir(run_dir):
        path = os.path.join(run_dir, name)
        if name in RUN_FILES or name.startswith(".tmp-"):
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)


def prepare(run_dir: str, config: dict, *, overwrite: bool, upgrade=None) -> str:
    """Makes `run_dir` ready for `config`; returns "new" or "resume".

    A directory holding a gradzoo run with the same config is resumed; one
    with a different config is refused; `upgrade(old)`, if given, restates
    an older gradzoo's config.json in today's terms before the comparison.
    `overwrite` starts the run over, removing only the run's own files. A
    non-empty directory that holds no gradzoo run is always refused: it is
    not ours to write into.

    Raises:
      RunDirError: with a one-line message naming the directory.
    """
    if not run_dir:
        raise RunDirError("output_dir is empty")
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"output_dir {run_dir} exists and is not a directory")
    old = _read_run_config(run_dir) if os.path.isdir(run_dir) else None
    if old is None and os.path.isdir(run_dir) and os.listdir(run_dir):
        raise RunDirError(
            f"output_dir {run_dir} is not empty and holds no gradzoo run "
            f"(no gradzoo {CONFIG_FILE}); choose another directory"
        )
    if old is not None:
        if upgrade is not None:
            old = upgrade(old)
        diffs = config_differences(old, config)
        if not diffs and not overwrite:
            return "resume"
        if not overwrite:
            raise RunDirError(
                f"output_dir {run_dir} holds a run with a different config "
                f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); "
                "use another --output_dir, or --overwrite to replace it"
            )
        _clear_run(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".tmp-write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise RunDirError(
            f"output_dir {run_dir} is not writable ({e.strerror})"
        ) from None
    return "new"
