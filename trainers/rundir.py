"""Writing the run directory (the contract in ARCHITECTURE.md).

Every JSON document is written to a temporary file and renamed, and every
JSONL row is appended as one whole line, so a crash or a kill never leaves a
half-written file behind. analysis/rundir.py reads what this writes.

Tested by tests/trainers/test_rundir.py.
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


def write_status(run_dir: str, state: str, step: int, message: str, nonfinite=None):
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
        },
    )


def config_differences(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two configs, ignoring locations."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in LOCATION_KEYS or old.get(key) == new.get(key):
            continue
        diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return diffs


def prepare(run_dir: str, config: dict, *, overwrite: bool) -> str:
    """Makes `run_dir` ready for `config`; returns "new" or "resume".

    A directory holding a run with the same config is resumed; one with a
    different config is refused unless `overwrite`, and a non-empty directory
    that is not a gradzoo run is always refused (it is not ours to delete).

    Raises:
      RunDirError: with a one-line message naming the directory.
    """
    if os.path.exists(run_dir) and not os.path.isdir(run_dir):
        raise RunDirError(f"output_dir {run_dir} exists and is not a directory")
    config_path = os.path.join(run_dir, CONFIG_FILE)
    is_run = os.path.isfile(config_path)
    if os.path.isdir(run_dir) and os.listdir(run_dir) and not is_run:
        raise RunDirError(
            f"output_dir {run_dir} is not empty and holds no gradzoo run "
            f"({CONFIG_FILE} missing); choose another directory"
        )
    if is_run:
        try:
            old = read_json(config_path)
        except (OSError, ValueError) as e:
            raise RunDirError(f"{config_path} is unreadable ({e})") from None
        diffs = config_differences(old, config)
        if not diffs:
            return "resume"
        if not overwrite:
            raise RunDirError(
                f"output_dir {run_dir} holds a run with a different config "
                f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); "
                "use another --output_dir, or --overwrite to replace it"
            )
        shutil.rmtree(run_dir)
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write-test")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise RunDirError(
            f"output_dir {run_dir} is not writable ({e.strerror})"
        ) from None
    return "new"
