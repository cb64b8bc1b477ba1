"""One training run from the command line: flags -> RunConfig -> run directory.

    python -m trainers.train --model=plain_mlp --task=digits --depth=30 \
        --activation=sigmoid --optimizer=sgd --learning_rate=0.1 \
        --num_steps=500 --output_dir=runs/x

Running the same command again resumes from the last checkpoint. Exit codes:
0 completed (or early-stopped), 2 a user mistake (one line on stderr),
3 diverged (see status.json), 130 interrupted by Ctrl-C or SIGTERM (status
"failed", resumable), 1 an unexpected error (traceback).

Tested by tests/trainers/test_train_main.py.
"""

import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, logging  # noqa: E402

from trainers import flags as gz_flags  # noqa: E402
from trainers import loop, rundir, runner  # noqa: E402
from trainers.cli import fail, parse_flags  # noqa: E402

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention


def _interrupt(signum, frame):
    # SIGTERM (a job scheduler, `kill`) ends the run like Ctrl-C: the loop
    # records "failed" with the step to resume from.
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    signal.signal(signal.SIGTERM, _interrupt)
    if len(argv) > 1:
        fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if gz_flags.NUM_CPU_DEVICES.value:
        runner.split_cpu(gz_flags.NUM_CPU_DEVICES.value)
    output_dir = gz_flags.OUTPUT_DIR.value
    try:
        config = gz_flags.config_from_flags()
        resolved = config.resolved()
        strategy = None
        if resolved.strategy == "multi_worker":
            # Like split_cpu, before TensorFlow runs any op (and after every
            # check of the config, since it waits for all workers to start).
            strategy = runner.make_strategy(resolved.strategy)
        run = runner.prepare(
            config,
            output_dir,
            overwrite=gz_flags.OVERWRITE.value,
            flags_text=gz_flags.flags_text(resolved),
            strategy=strategy,
        )
    except ValueError as e:  # every user mistake is refused by prepare()
        fail(f"{e}{gz_flags.recipe_note()}")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before training started\n")
        sys.exit(EXIT_INTERRUPTED)
    try:
        result = run.train()
    except rundir.RunDirError as e:  # an unrestorable checkpoint
        fail(e)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; status.json says where
        status = rundir.read_json(os.path.join(output_dir, rundir.STATUS_FILE))
        sys.stderr.write(f"interrupted: {status['message']}\n")
        sys.exit(EXIT_INTERRUPTED)
    logging.info("%s: %s", result.state, result.message)
    print(f"{result.state} at step {result.step}: {result.message}")
    copy = ""
    if run.config.strategy == "multi_worker" and not runner.read_tf_config().is_chief:
        copy = " (this worker's copy; the chief's output_dir is the run)"
    print(f"run directory: {output_dir}{copy}")
    if result.state == "diverged":
        sys.exit(loop.EXIT_DIVERGED)


def run_main():
    """Console-script entry point (gradzoo-train)."""
    gz_flags.flags.mark_flag_as_required("output_dir")
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    run_main()
