"""What a main shows: progress and results on the terminal, the rest in a log.

A run's terminal output is gradzoo's own lines (progress, evaluations, the
result) and errors. Everything else that libraries log (TensorFlow's C++
start-up lines, TFDS's INFO lines, checkpoint internals) goes only to the
run directory's log.txt, with gradzoo's lines, so nothing is lost.

    with console.captured_fd2() as import_noise:
        import tensorflow                       # C++ lines land in a buffer
    console.quiet_terminal()                    # filter the absl handler
    ...
    console.log_to(run_dir.file(schema.LOG_FILE), import_noise())

Tested by tests/trainers/test_train_main.py (test_real_command_line_run).
"""

import contextlib
import logging
import os
import sys
import tempfile

from absl import logging as absl_logging

# Records from files under these folders are gradzoo's own.
_OURS = tuple(
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), p)
    + os.sep
    for p in ("zoo", "trainers", "analysis")
)


@contextlib.contextmanager
def captured_fd2():
    """Sends file descriptor 2 to a temporary file for the block.

    TensorFlow's C++ libraries write to the descriptor directly when they
    load (before TF_CPP_MIN_LOG_LEVEL is honoured), so redirecting
    sys.stderr would not catch them. Yields a function returning the
    captured text. If the block raises, the text goes to the terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    buffer = tempfile.TemporaryFile()
    os.dup2(buffer.fileno(), 2)
    text = []

    def captured() -> str:
        return "".join(text)

    try:
        yield captured
    except BaseException:
        _restore(saved, buffer, text)
        sys.stderr.write(captured())
        raise
    _restore(saved, buffer, text)


def _restore(saved: int, buffer, text: list) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    buffer.seek(0)
    text.append(buffer.read().decode("utf-8", "replace"))
    buffer.close()


class _OursOrErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or record.pathname.startswith(_OURS)


class _Buffer(logging.Handler):
    """Keeps every record until the run's log file is known."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


_buffer = _Buffer()


def quiet_terminal() -> None:
    """The terminal shows gradzoo's lines and errors; all records are kept
    for `log_to`."""
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _OursOrErrors) for f in handler.filters):
        handler.addFilter(_OursOrErrors())
    root = logging.getLogger()
    if _buffer not in root.handlers:
        root.addHandler(_buffer)


def log_to(path: str, preamble: str = "") -> logging.Handler:
    """Appends every record so far, and from now on, to `path`.

    Returns the handler; `stop_logging(handler)` detaches it.
    """
    handler = logging.FileHandler(path)
    handler.setFormatter(absl_logging.PythonFormatter())
    if preamble:
        with open(path, "a") as f:
            f.write(preamble)
    for record in _buffer.records:
        handler.handle(record)
    _buffer.records.clear()
    root = logging.getLogger()
    root.removeHandler(_buffer)
    root.addHandler(handler)
    return handler


def stop_logging(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
