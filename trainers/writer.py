"""Writing a run directory: claiming it, deciding new or resume, writing rows.

The schema (file names, row types, atomic I/O) lives in analysis/schema.py,
shared with every reader. This module adds what only the writer needs:

- An owner. The writing process holds an exclusive lock (flock) on the
  run directory itself for as long as it writes, and records its pid, host
  and a heartbeat in status.json. A second process is refused at once while
  the lock is held; the kernel drops the lock when the owner dies in any
  way (SIGKILL, OOM, power loss), so a dead owner's run is simply resumed.
  From another host on a shared filesystem, where flock may not reach, a
  heartbeat younger than HEARTBEAT_STALE_SECONDS counts as live.
- New or resume. A directory holding a gradzoo run with the same config is
  resumed; a different config is refused; `overwrite` removes only the
  run's own files; a non-empty directory without a gradzoo run is refused.

    >>> run_dir = claim("runs/x")                  # refuses a live owner
    >>> run_dir.open(record, overwrite=False)      # "new" or "resume"
    >>> run_dir.write_status("running", 0, "started")
    >>> run_dir.release()

Tested by tests/trainers/test_writer.py.
"""

import errno
import fcntl
import json
import os
import shutil
import socket
import time

from absl import logging

from analysis import schema
from analysis.schema import RunDirError
from trainers.config import NOT_COMPARED

# A heartbeat older than this, from another host, is a dead owner's.
HEARTBEAT_STALE_SECONDS = 600.0


def _differences(old: dict, new: dict, ignore) -> list[str]:
    """Human-readable differences between two records' JSON."""
    new = json.loads(schema.dumps(new))  # as it will read back
    diffs = []
    for key in sorted(set(old) | set(new)):
        if key in ignore or old.get(key) == new.get(key):
            continue
        diffs.append(f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
    return diffs


def read_record(path: str) -> schema.RunRecord | None:
    """The record of the gradzoo run in directory `path`, or None."""
    try:
        return schema.RunRecord.from_json(
            schema.read_json(os.path.join(path, schema.CONFIG_FILE))
        )
    except (OSError, ValueError):
        return None


def read_status(path: str) -> schema.Status | None:
    """The status of the run in directory `path`, or None if unreadable."""
    try:
        return schema.Status.from_json(
            schema.read_json(os.path.join(path, schema.STATUS_FILE))
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


class RunDir:
    """A run directory this process owns (or will own once it exists)."""

    def __init__(self, path: str):
        self.path = path
        self._lock_fd = None
        self._owner = None

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    # -- ownership ---------------------------------------------------------

    def _lock(self) -> None:
        """Takes the directory's lock, or refuses naming the live owner."""
        fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunDirError(self._in_use("is in use")) from None
        status = read_status(self.path)
        owner = status.owner if status else None
        if (
            status is not None
            and status.state == "running"
            and owner is not None
            and owner.host != socket.gethostname()
            and time.time() - owner.heartbeat < HEARTBEAT_STALE_SECONDS
        ):
            os.close(fd)
            raise RunDirError(self._in_use("has a live owner on another host"))
        self._lock_fd = fd
        self._owner = schema.Owner(os.getpid(), socket.gethostname(), time.time())

    def _in_use(self, what: str) -> str:
        status = read_status(self.path)
        owner = status.owner if status and status.owner else None
        who = f"pid {owner.pid} on {owner.host}" if owner else "another process"
        return (
            f"output_dir {self.path} {what} by a live run ({who}); wait for it, "
            "or stop it and run again to resume"
        )

    def release(self) -> None:
        """Gives up ownership (the run directory stays as it is)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self):
        self.release()

    # -- new or resume -------------------------------------------------------

    def open(self, record: schema.RunRecord, *, overwrite: bool, upgrade=None) -> str:
        """Makes the directory ready for `record`; returns "new" or "resume".

        `upgrade(old)` restates an older gradzoo's record in today's terms
        before the comparison. For a new run, config.json is written.

        Raises:
          RunDirError: with a one-line message naming the directory.
        """
        path = self.path
        old = read_record(path) if os.path.isdir(path) else None
        if old is not None:
            if upgrade is not None:
                old = upgrade(old)
            ignore = (schema.FORMAT_KEY, "depth_axis", *NOT_COMPARED)
            diffs = _differences(old.to_json(), record.to_json(), ignore)
            if not diffs and not overwrite:
                if old.format != schema.FORMAT:
                    logging.info(
                        "%s: upgrading config.json from %s to %s",
                        path,
                        old.format,
                        schema.FORMAT,
                    )
                    schema.write_json(self.file(schema.CONFIG_FILE), record.to_json())
                return "resume"
            if not overwrite:
                raise RunDirError(
                    f"output_dir {path} holds a run with a different config "
                    f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); "
                    "use another --output_dir, or --overwrite to replace it"
                )
            self._clear()
        try:
            os.makedirs(path, exist_ok=True)
            probe = os.path.join(path, schema.TMP_PREFIX + "write-test")
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            raise RunDirError(
                f"output_dir {path} is not writable ({e.strerror})"
            ) from None
        if self._lock_fd is None:
            self._lock()
        schema.write_json(self.file(schema.CONFIG_FILE), record.to_json())
        return "new"

    def _clear(self) -> None:
        """Removes the run's own files only; anything else stays."""
        for name in os.listdir(self.path):
            path = self.file(name)
            if schema.is_run_file(name) or name.startswith(schema.TMP_PREFIX):
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)

    # -- writing -------------------------------------------------------------

    def write_status(
        self,
        state: str,
        step: int,
        message: str,
        nonfinite=None,
        early_stopped: bool = False,
    ) -> None:
        """status.json, with this process as the owner and a fresh heartbeat.

        A run that ended records no owner: nothing is writing it any more.
        """
        now = time.time()
        owner = None
        if state == "running" and self._owner is not None:
            owner = schema.Owner(self._owner.pid, self._owner.host, now)
        status = schema.Status(
            state, step, message, nonfinite, early_stopped, now, owner
        )
        schema.write_json(self.file(schema.STATUS_FILE), status.to_json())

    def append(self, name: str, row) -> None:
        """Appends a row (a schema row type) to the JSONL file `name`."""
        schema.append_jsonl(self.file(name), row.to_json())

    def truncate_after(self, step: int) -> None:
        """Drops rows after `step` from every JSONL file (a resume replays them)."""
        for name in schema.JSONL_FILES:
            schema.truncate_jsonl(self.file(name), step)


def claim(path: str) -> RunDir:
    """A RunDir for `path`, locked if it exists; nothing is written.

    Refuses at once (RunDirError) an empty path, a path that is a file, a
    non-empty directory holding no gradzoo run, and a directory whose owner
    is alive.
    """
    if not path:
        raise RunDirError("output_dir is empty")
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"output_dir {path} exists and is not a directory")
    run_dir = RunDir(path)
    if os.path.isdir(path):
        if read_record(path) is None and os.listdir(path):
            raise RunDirError(
                f"output_dir {path} is not empty and holds no gradzoo run "
                f"(no gradzoo {schema.CONFIG_FILE}); choose another directory"
            )
        run_dir._lock()
    return run_dir


def own(path: str) -> RunDir:
    """A locked RunDir for a plain directory (made if missing) that a caller
    of loop.train names by path: no gradzoo config.json is needed or
    written, only the loop's own files."""
    os.makedirs(path, exist_ok=True)
    run_dir = RunDir(path)
    run_dir._lock()
    return run_dir
