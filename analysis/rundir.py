"""Reading run directories: the other half of the contract in trainers/rundir.py.

Analysis reads run directories, never the trainer's memory.

    >>> run = load_run("runs/x")
    >>> run.status["state"], run.final_eval, run.metrics[-1]["grad_norms"]

Tested by tests/analysis/test_compare.py.
"""

import dataclasses
import os

from trainers.rundir import (
    CONFIG_FILE,
    EVAL_FILE,
    METRICS_FILE,
    STATUS_FILE,
    TEMPORAL_FILE,
    RunDirError,
    read_json,
    read_jsonl,
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory, read."""

    path: str
    config: dict
    status: dict
    metrics: list[dict]  # metrics.jsonl rows in step order
    evals: list[dict]  # eval.jsonl rows in step order
    # gradient_through_time.jsonl rows in step order; empty unless the run
    # had log_gradient_through_time.
    gradient_through_time: list[dict] = dataclasses.field(default_factory=list)

    @property
    def final_eval(self) -> dict | None:
        return self.evals[-1] if self.evals else None


def _read_json(path):
    try:
        return read_json(path)
    except FileNotFoundError:
        raise RunDirError(f"{path} is missing: not a gradzoo run directory?") from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path} is unreadable ({e})") from None


def load_run(path: str) -> Run:
    """Reads a run directory.

    Raises:
      RunDirError: a missing or unreadable file, named with its line.
    """
    if not os.path.isdir(path):
        raise RunDirError(f"{path} is not a directory")
    return Run(
        path=path,
        config=_read_json(os.path.join(path, CONFIG_FILE)),
        status=_read_json(os.path.join(path, STATUS_FILE)),
        metrics=read_jsonl(os.path.join(path, METRICS_FILE)),
        evals=read_jsonl(os.path.join(path, EVAL_FILE)),
        gradient_through_time=read_jsonl(os.path.join(path, TEMPORAL_FILE)),
    )
