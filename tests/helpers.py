"""Helpers shared by test modules: the absl main run in-process.

Imported as `from tests.helpers import run_cli` (trainers.train) or
`run_pretrain_cli` (trainers.pretrain); not a test module itself.
"""

from absl.testing import flagsaver

from analysis import cli
from trainers import train


def run_cli(capsys, *args):
    """Runs the main in-process; returns (exit code, stdout, stderr)."""
    code = 0
    with flagsaver.flagsaver():
        try:
            cli.parse_flags(["train", *args])
            train.main(["train"])
        except SystemExit as e:
            code = e.code
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
