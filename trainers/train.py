"""One training run from the command line: flags -> RunConfig -> run directory.

    python -m trainers.train --model=plain_mlp --task=digits --depth=30 \
        --activation=sigmoid --optimizer=sgd --learning_rate=0.1 \
        --num_steps=500 --output_dir=runs/x
    python -m trainers.train --config=runs/x/config.json --output_dir=runs/y

Running the same command again resumes from the last checkpoint, or, for a
run that already ended, says so. TensorFlow is imported only after every
check that needs none (flags, config, output_dir, an ended run), so --help
and those refusals take about a second, not the 5-8 s of TensorFlow's
start-up (tests/test_startup.py). Exit codes
(analysis/cli.py): 0 completed (or early-stopped), 2 a user mistake (one
line on stderr), 3 diverged (see status.json), 130 interrupted by Ctrl-C or
SIGTERM (status "failed", resumable), 1 an error: one line for a failed
write (a full disk, lost permissions; status "failed", resumable), a
traceback for anything else. The terminal shows progress and results; the
rest of the log is in the run directory's log.txt.

Tested by tests/trainers/test_train_main.py.
"""

import os
import signal
import sys

# A SIGTERM while the libraries load: nothing is written yet, so just exit
# with the code of an interruption (main() installs the real handler).
signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(130))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# None of these imports TensorFlow: --help, the flags (made from the zoo's
# signatures) and every refusal of bad input come before TensorFlow starts.
from absl import logging  # noqa: E402

import zoo  # noqa: E402
from analysis import cli, schema  # noqa: E402
from trainers import console, writer  # noqa: E402
from trainers import flags as gz_flags  # noqa: E402
from trainers.config import upgrade_record  # noqa: E402


def _import_tensorflow():
    """trainers.runner (TensorFlow, Keras, TFDS); returns (runner, the
    C++ libraries' start-up lines, for the run's log.txt)."""
    with console.captured_fd2() as noise:
        cli.import_keras()
        from trainers import runner

        # Probing for GPUs makes the CUDA libraries print their start-up
        # lines (e.g. "failed call to cuInit" on a machine without one):
        # here, into the capture, not on the terminal. It does not start the
        # runtime, so logical devices and multi_worker can still be set up.
        runner.tf.config.list_physical_devices("GPU")
    return runner, noise()


def _interrupt(signum, frame):
    # SIGTERM (a job scheduler, `kill`) ends the run like Ctrl-C: the loop
    # records "failed" with the step to resume from.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    signal.signal(signal.SIGTERM, _interrupt)
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    console.quiet_terminal()
    output_dir = os.path.expanduser(gz_flags.OUTPUT_DIR.value or "")
    config = None
    try:
        # Every check that needs no TensorFlow: the flags and the config,
        # then the output_dir (claimed and let go: build_run claims it for
        # good), then whether the run already ended.
        config = gz_flags.config_from_flags()
        resolved = config.resolved()
        gz_flags.log_recipe(config)
        writer.claim(output_dir).release()
        ended = _ended(output_dir, resolved)
        if ended is not None:
            logging.info("%s: already %s", output_dir, ended.message)
            _report(ended, output_dir, resolved)
            return
        cli.use_cpu_allocator(zoo.model_spec(resolved.model).cpu_allocator)
        runner, import_noise = _import_tensorflow()
        if gz_flags.NUM_CPU_DEVICES.value:
            runner.split_cpu(gz_flags.NUM_CPU_DEVICES.value)
        strategy = None
        if resolved.strategy == "multi_worker":
            # Like split_cpu, before TensorFlow runs any op (and after every
            # check of the config, since it waits for all workers to start).
            strategy = runner.make_strategy(resolved.strategy)
        built = runner.build_run(
            resolved,
            output_dir,
            overwrite=gz_flags.OVERWRITE.value,
            flags_text=gz_flags.flags_text(resolved),
            strategy=strategy,
        )
    except ValueError as e:  # every user mistake is refused before training
        cli.fail(f"{e}{_recipe_note(config, e)}")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before training started\n")
        sys.exit(cli.EXIT_INTERRUPTED)
    log = console.log_to(built.run_dir.file(schema.LOG_FILE), import_noise)
    logging.info("TensorFlow's CPU allocator: %s", runner.cpu_allocator())
    try:
        result = built.train()
    except schema.RunDirError as e:  # an unrestorable checkpoint
        cli.fail(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; status.json says where
        status = writer.read_status(output_dir)
        sys.stderr.write(f"interrupted: {status.message if status else ''}\n")
        sys.exit(cli.EXIT_INTERRUPTED)
    except (OSError, runner.tf.errors.OpError) as e:
        reason = _storage_error(e)
        if reason is None:
            raise  # not the machine's storage: a bug, with its traceback
        status = writer.read_status(output_dir)
        resume = status.message if status and status.state == "failed" else ""
        sys.stderr.write(f"error: {output_dir}: {reason}; {resume}\n")
        sys.exit(cli.EXIT_ERROR)
    finally:
        console.stop_logging(log)
    _report(result, output_dir, resolved)


def _ended(output_dir: str, resolved) -> schema.Status | None:
    """The status of a run in output_dir that already ended with this
    config, which a re-run only reports (before TensorFlow starts); None
    when the run must be built (new, to resume, to overwrite, to restore a
    missing model.keras, or not on the default strategy)."""
    if gz_flags.OVERWRITE.value or resolved.strategy != "default":
        return None
    return writer.ended_status(output_dir, resolved.to_dict(), upgrade=upgrade_record)


def _report(result, output_dir: str, resolved) -> None:
    """The result's two lines; exit code 3 for a diverged run."""
    print(f"{result.state} at step {result.step}: {result.message}")
    copy = ""
    if resolved.strategy == "multi_worker":
        from trainers import runner  # already imported by the run

        if not runner.read_tf_config().is_chief:
            copy = " (this worker's copy; the chief's output_dir is the run)"
    print(f"run directory: {output_dir}{copy}")
    if result.state == "diverged":
        sys.exit(cli.EXIT_DIVERGED)


# What a failed write says, from Python (errno) or from TensorFlow's file
# system layer (the text of the OS error inside its message).
_STORAGE_ERRORS = (
    "No space left on device",
    "Disk quota exceeded",
    "Read-only file system",
    "Permission denied",
)


def _storage_error(e: Exception) -> str | None:
    """The storage problem behind a failed write, or None for anything else."""
    text = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    return next((reason for reason in _STORAGE_ERRORS if reason in text), None)


def _recipe_note(config, error: ValueError) -> str:
    """The recipe's settings, when the error is about one of them."""
    if config is None or isinstance(error, schema.RunDirError):
        return ""
    try:
        used = config.recipe_settings()
    except ValueError:
        return ""
    if not any(name in str(error) for name in used):
        return ""
    return gz_flags.recipe_note(config)


def run_main():
    """Console-script entry point (gradzoo-train)."""
    gz_flags.flags.mark_flag_as_required("output_dir")
    cli.run(main)


if __name__ == "__main__":
    run_main()
