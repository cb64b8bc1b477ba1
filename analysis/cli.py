"""How every gradzoo command line ends: exit codes and the one-line error.

The mains of both packages (trainers.train, analysis.compare, ...) use this
module, so the codes are the same everywhere. It imports neither TensorFlow
nor any flag definitions (`import_keras` imports Keras when a main calls it).
Tested by tests/trainers/test_train_main.py and tests/test_startup.py.
"""

import importlib.abc
import logging
import os
import sys

from absl import flags

EXIT_OK = 0  # completed, early stops included
EXIT_ERROR = 1  # a failed write (disk full, ...): one line; anything else: a traceback
EXIT_USAGE = 2  # a user mistake: bad flag, bad config, unusable directory
EXIT_DIVERGED = 3  # the run ended as "diverged" (see its status.json)
EXIT_INTERRUPTED = 130  # 128 + SIGINT: Ctrl-C or SIGTERM; the run is resumable

HELP_FLAGS = ("--help", "-h", "--helpfull", "-?")


# Packages Keras imports when it starts, only for extras a run never uses:
# scikit-learn (and with it scipy.stats) for keras.wrappers, matplotlib for
# keras.visualization.
_KERAS_EXTRAS = ("sklearn", "matplotlib")


class _SkipImports(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _KERAS_EXTRAS:
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
        return None


def import_keras() -> None:
    """Imports Keras (and TensorFlow) for a run process, without its extras.

    Keras imports scikit-learn and matplotlib when it starts, if they are
    installed, for its scikit-learn wrappers and image plots, which a run
    process never uses; they were ~2 s of every run's start (`from trainers
    import runner`: 7.4-8.4 s with scikit-learn, 6.5-6.9 s without, 3 runs
    each; matplotlib.pyplot another 0.7 s by `python -X importtime`). Keras
    treats both as optional. The block lasts only while Keras loads: a later
    `import sklearn` (the digits builder, zoo/tasks/builders.py) or
    matplotlib works as usual.
    """
    if "keras" in sys.modules:
        return
    skip = _SkipImports()
    sys.meta_path.insert(0, skip)
    try:
        import keras  # noqa: F401
    except ImportError:  # a Keras that needs one of them: load it with them
        pass
    finally:
        sys.meta_path.remove(skip)
    import keras  # noqa: F401, F811


# TensorFlow reads it when it first allocates CPU memory (its first op).
BFC_ENV = "TF_CPU_ALLOCATOR_USE_BFC"


def use_cpu_allocator(kind: str, *, force: bool = False) -> None:
    """Asks TensorFlow for its CPU allocator `kind` ("default" or "bfc").

    Call it before TensorFlow's first op. A value the user set in the
    environment is kept unless `force`. The zoo declares each model's
    allocator (zoo/registry.py `CPU_ALLOCATORS`): "bfc" keeps the memory it
    frees, so the multi-megabyte buffers of a fused LSTM step are not handed
    back to the system and page-faulted in again on every step.
    """
    if force or BFC_ENV not in os.environ:
        os.environ[BFC_ENV] = "true" if kind == "bfc" else "false"


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


def run(main, flags_parser=parse_flags) -> None:
    """absl's app.run(main), then `exit_now` with main's exit code."""
    from absl import app

    call_then_exit(app.run, main, flags_parser=flags_parser)


def call_then_exit(fn, *args, **kwargs) -> None:
    """fn(*args, **kwargs), then `exit_now` with the code it exits with (0
    if it returns). An exception other than SystemExit propagates as usual
    (a traceback)."""
    try:
        fn(*args, **kwargs)
        code = EXIT_OK
    except SystemExit as e:
        code = e.code
    exit_now(code)


def exit_now(code) -> None:
    """Ends the process with `code`, skipping the interpreter's teardown.

    For the mains a suite starts once per run (trainers.train,
    trainers.pretrain, analysis.probes): what they write is closed, flushed
    or renamed into place before main returns, and the teardown after it
    (TensorFlow's thread pools and runtime) took ~3 s per process on 2
    cores, minutes of a suite. Flushes the standard streams and logging
    first. `code` is what SystemExit carries: None, an int, or a message
    (printed; exit 1). A process that never imported TensorFlow (--help, a
    refused flag) has no such teardown and exits the ordinary way.
    """
    if "tensorflow" not in sys.modules:
        sys.exit(code)
    if code is None:
        code = EXIT_OK
    elif not isinstance(code, int):
        sys.stderr.write(f"{code}\n")
        code = EXIT_ERROR
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
