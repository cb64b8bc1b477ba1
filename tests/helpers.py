"""Helpers shared by test modules: the absl main run in-process.

Imported as `from tests.helpers import run_cli` (trainers.train) or
`run_pretrain_cli` (trainers.pretrain); not a test module itself.
"""

import subprocess
import sys

from absl.testing import flagsaver

from analysis import cli
from trainers import train


def run_main(*args) -> int:
    """Runs trainers.train's main in-process; returns its exit code."""
    with flagsaver.flagsaver():
        try:
            cli.parse_flags(["train", *args])
            train.main(["train"])
        except SystemExit as e:
            return e.code
    return 0


def run_cli(capsys, *args):
    """Runs the main in-process; returns (exit code, stdout, stderr)."""
    code = run_main(*args)
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, *needles):
    """A user mistake: exit 2 and one `error: ` line holding every needle."""
    assert code == cli.EXIT_USAGE
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in errors[0], errors[0]


def run_pretrain_cli(capsys, *args):
    """Runs trainers.pretrain's main in-process; (exit code, stdout, stderr)."""
    from trainers import pretrain

    code = 0
    with flagsaver.flagsaver():
        try:
            cli.parse_flags(["pretrain", *args])
            pretrain.main(["pretrain"])
        except SystemExit as e:
            code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


# A stand-in live owner: another process that holds a run directory's lock,
# as a training process does, and names itself in status.json.
_OWNER = """
import fcntl, json, os, socket, sys, time
d = sys.argv[1]
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
fcntl.flock(fd, fcntl.LOCK_EX)
path = os.path.join(d, "status.json")
status = json.load(open(path)) if os.path.exists(path) else {"step": 0}
status["state"] = "running"
status["owner"] = {"pid": os.getpid(), "host": socket.gethostname(),
                   "heartbeat": time.time()}
json.dump(status, open(path, "w"))
print("locked", flush=True)
time.sleep(120)
"""


def live_owner(run_dir) -> subprocess.Popen:
    """Starts a process that owns `run_dir` and returns once it does.

    The caller kills it (`proc.kill(); proc.wait()`).
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc
