"""How every gradzoo command line ends: exit codes and the one-line error.

The mains of both packages (trainers.train, analysis.compare, ...) use this
module, so the codes are the same everywhere. It imports neither TensorFlow
nor any flag definitions. Tested by tests/trainers/test_train_main.py.
"""

import sys

from absl import flags

EXIT_OK = 0  # completed, early stops included
EXIT_ERROR = 1  # a failed write (disk full, ...): one line; anything else: a traceback
EXIT_USAGE = 2  # a user mistake: bad flag, bad config, unusable directory
EXIT_DIVERGED = 3  # the run ended as "diverged" (see its status.json)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C or SIGTERM; the run is resumable

HELP_FLAGS = ("--help", "-h", "--helpfull", "-?")


def fail(message) -> None:
    """Exits with one line on stderr and EXIT_USAGE."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_USAGE)


def parse_flags(argv):
    """Flags parser for absl's app.run: a bad flag is one line and exit 2.

    --help / --helpfull print the help and exit 0 (absl's own exit 1).
    """
    if any(a in HELP_FLAGS for a in argv[1:]):
        if "--helpfull" in argv[1:]:
            text = flags.FLAGS.get_help()
        else:  # gradzoo's own flags, not absl's or TensorFlow's
            ours = [
                m
                for m in flags.FLAGS.flags_by_module_dict()
                if m.split(".")[0] in ("trainers", "analysis", "__main__")
            ]
            text = "\n\n".join(flags.FLAGS.module_help(m) for m in ours)
        sys.stdout.write(f"{text}\n")
        sys.exit(EXIT_OK)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        message = str(e).removeprefix("ERROR:: ")
        fail(message)
    except UnicodeDecodeError:
        files = [a.split("=", 1)[1] for a in argv if a.startswith("--flagfile=")]
        fail(f"--flagfile {' '.join(files)} is not a text file of flags")
