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

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import threading
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


def has_ended(status: schema.Status, num_steps: int) -> bool:
    """Whether a run with this status is over for a run of `num_steps`.

    A diverged or early-stopped run stays as it ended; a completed one is
    extended only if asked for more steps (the CLI refuses that as a
    changed config).
    """
    return status.state == "diverged" or (
        status.state == "completed"
        and (status.step >= num_steps or status.early_stopped)
    )


def ended_status(path: str, config: dict, *, upgrade=None) -> schema.Status | None:
    """The status of the run in `path` if it already ended with `config`
    (RunConfig fields) and its model.keras is there; else None.

    Reads config.json and status.json only, so a command can report an
    ended run before it starts TensorFlow. Everything else (another config,
    a missing model.keras, a phase of a pretraining run) is for
    `RunDir.open` and the loop to decide.
    """
    record, status = read_record(path), read_status(path)
    if (
        record is None
        or status is None
        or not os.path.isfile(os.path.join(path, schema.MODEL_FILE))
        or (record.worker, record.pretraining, record.phase) != (None, None, None)
    ):
        return None
    if upgrade is not None:
        record = upgrade(record)
    if _differences(record.config, config, NOT_COMPARED):
        return None
    return status if has_ended(status, config["num_steps"]) else None


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
        self.opened = False  # open() made it ready (config.json written or read)
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
        if self.opened and os.path.exists(self.file(_RESERVE)):
            os.remove(self.file(_RESERVE))
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __del__(self):
        try:
            self.release()
        except Exception:  # noqa: BLE001 - at interpreter exit, os may be gone
            pass

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
            if not overwrite:
                self._check_files()  # before anything is touched
            if upgrade is not None:
                old = upgrade(old)
            ignore = (schema.FORMAT_KEY, "depth_axis", *NOT_COMPARED)
            diffs = _differences(old.to_json(), record.to_json(), ignore)
            if not diffs and not overwrite:
                self._probe_writable()
                if old.format != schema.FORMAT:
                    logging.info(
                        "%s: upgrading config.json from %s to %s",
                        path,
                        old.format,
                        schema.FORMAT,
                    )
                    schema.write_json(self.file(schema.CONFIG_FILE), record.to_json())
                self._reserve()
                self.opened = True
                return "resume"
            if not overwrite:
                raise RunDirError(
                    f"output_dir {path} holds a run with a different config "
                    f"({'; '.join(diffs[:3])}{'; ...' if len(diffs) > 3 else ''}); "
                    "use another --output_dir, or --overwrite to replace it"
                )
            self._clear()
        self._check_length()
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise RunDirError(_unusable(path, e)) from None
        self._probe_writable()
        if self._lock_fd is None:
            self._lock()
        # config.json and status.json together: a signal between the two
        # would leave a run whose status nobody can read.
        with _signals_deferred():
            schema.write_json(self.file(schema.CONFIG_FILE), record.to_json())
            self.write_status("running", 0, "created")
            self.opened = True
        self._reserve()
        return "new"

    def _reserve(self) -> None:
        """Sets aside a little disk space, so that a run the disk filled up
        can still record "failed" in status.json (see mark_failed)."""
        try:
            with open(self.file(_RESERVE), "wb") as f:
                f.write(b"\0" * _RESERVE_BYTES)
        except OSError:
            pass  # no space even for that: mark_failed does its best

    def _check_length(self) -> None:
        """Refuses a path too long for the files a run writes in it, before
        any folder of it is made."""
        longest = os.path.join(
            os.path.abspath(self.path), schema.TB_DIR, "events.out.tfevents." + "x" * 96
        )
        if len(longest) >= _PATH_MAX:
            raise RunDirError(
                f"output_dir {self.path[:60]}... is too long ({len(self.path)} "
                f"characters; the files of a run need it under "
                f"{_PATH_MAX - len(longest) + len(os.path.abspath(self.path))})"
            )

    def _probe_writable(self) -> None:
        """Refuses a directory this process cannot write into."""
        self._check_length()
        probe = os.path.join(self.path, schema.TMP_PREFIX + "write-test")
        try:
            with open(probe, "w"):
                pass
            os.remove(probe)
        except OSError as e:
            raise RunDirError(_unusable(self.path, e)) from None

    def _check_files(self) -> None:
        """Refuses a run whose files are not what the writer left: found
        before a resume touches anything (a truncation, a status)."""
        for name in (schema.CKPT_DIR, schema.TB_DIR):
            if os.path.lexists(self.file(name)) and not os.path.isdir(self.file(name)):
                raise RunDirError(
                    f"{self.file(name)} should be a directory and is not; move it "
                    "away to resume, or --overwrite to start over"
                )
        for name in (schema.CONFIG_FILE, schema.STATUS_FILE, *schema.JSONL_FILES):
            if os.path.isdir(self.file(name)):
                raise RunDirError(
                    f"{self.file(name)} should be a file and is a directory; move "
                    "it away to resume, or --overwrite to start over"
                )
        for name, row_type in (
            (schema.METRICS_FILE, schema.MetricsRow),
            (schema.EVAL_FILE, schema.EvalRow),
            (schema.TEMPORAL_FILE, schema.TemporalRow),
        ):
            for number, row in enumerate(schema.read_jsonl(self.file(name)), 1):
                try:
                    row_type.from_json(row)
                except (KeyError, TypeError, ValueError) as e:
                    raise RunDirError(
                        f"{self.file(name)} line {number}: {e}; --overwrite to "
                        "start over"
                    ) from None

    def mark_failed(self, what: str, reached: int | None = None) -> None:
        """status.json "failed", resumable from the weights on disk.

        The step of the weights on disk is the one status.json recorded last
        (every checkpoint and heartbeat records it). Never raises: on a full
        disk the status may not be writable, and the caller's error matters
        more.
        """
        status = read_status(self.path)
        saved = status.step if status is not None else 0
        at = f" at step {reached}" if reached is not None else ""
        message = f"{what}{at}; run the same command to resume from step {saved}"
        try:
            self.write_status("failed", saved, message)
        except OSError:
            try:  # a full disk: give back the reserve, then try again
                os.remove(self.file(_RESERVE))
                self.write_status("failed", saved, message)
            except OSError as e:
                logging.error("%s: could not record the failure (%s)", self.path, e)

    def _clear(self) -> None:
        """Removes the run's own files only; anything else stays.

        Inside ckpt/ and tb/ only what the writer puts there goes
        (checkpoint files, event files); the folder stays if a user's file
        is left in it.
        """
        for name in os.listdir(self.path):
            path = self.file(name)
            if name in (schema.CKPT_DIR, schema.TB_DIR) and os.path.isdir(path):
                _clear_own(path, _OWN_FILES[name])
            elif schema.is_run_file(name) or name.startswith(schema.TMP_PREFIX):
                if os.path.isdir(path) and not os.path.islink(path):
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


# Disk space set aside while a run is open, for recording its failure.
_RESERVE = schema.TMP_PREFIX + "reserve"
_RESERVE_BYTES = 64 * 1024

# What the writer puts in ckpt/ and tb/ (CheckpointManager, tf.summary).
_OWN_FILES = {
    schema.CKPT_DIR: re.compile(r"^(checkpoint|ckpt-\d+(_temp)?(\..*)?)$"),
    schema.TB_DIR: re.compile(r"^events\.out\.tfevents\..*$"),
}
_PATH_MAX = os.pathconf("/", "PC_PATH_MAX") if hasattr(os, "pathconf") else 4096


@contextlib.contextmanager
def _signals_deferred():
    """Holds SIGINT and SIGTERM until the block is done, then delivers them.

    Blocking the signal in this thread would not do: TensorFlow's threads
    would take a process-directed signal instead. So the Python handlers are
    swapped for ones that only note the signal (main thread only, where
    Python runs handlers).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    saved = {
        s: signal.signal(s, lambda signum, frame: caught.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
        for signum in caught:
            handler = saved[signum]
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL:
                raise KeyboardInterrupt(f"signal {signum}")


def _clear_own(folder: str, own: re.Pattern) -> None:
    for name in os.listdir(folder):
        if own.match(name):
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    if not os.listdir(folder):
        os.rmdir(folder)


def _unusable(path: str, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return f"output_dir {path} is a symbolic link loop"
    if e.errno == errno.ENAMETOOLONG:
        return f"output_dir {path[:60]}... is too long for this filesystem"
    return f"output_dir {path} is not writable ({e.strerror})"


def claim(path: str) -> RunDir:
    """A RunDir for `path`, locked if it exists; nothing is written.

    Refuses at once (RunDirError) an empty path, a path that is a file or
    too long for a run's files, a non-empty directory holding no gradzoo
    run, and a directory whose owner is alive.
    """
    if not path:
        raise RunDirError("output_dir is empty")
    path = os.path.expanduser(path)
    try:
        os.stat(path)
    except FileNotFoundError:
        pass
    except OSError as e:  # a symlink loop, a name too long, ...
        raise RunDirError(_unusable(path, e)) from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise RunDirError(f"output_dir {path} exists and is not a directory")
    run_dir = RunDir(path)
    run_dir._check_length()
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
