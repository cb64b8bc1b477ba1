"""How every gradzoo command line ends a user mistake: one line, exit 2.

Imports neither TensorFlow nor any flag definitions, so the light mains
(analysis.compare) can use it too. Tested by tests/trainers/test_train_main.py.
"""

import sys

from absl import flags

EXIT_USAGE = 2  # a user mistake: bad flag, bad config, unusable directory


def fail(message) -> None:
    """Exits with one line on stderr."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(EXIT_USAGE)


def parse_flags(argv):
    """Flags parser for absl's app.run: a bad flag is one line and exit 2."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        fail(e)
