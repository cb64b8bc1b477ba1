"""Greedy layer-wise pretraining, then fine-tuning, from the command line.

    python -m trainers.pretrain --model=plain_mlp --depth=5 --width=256 \
        --activation=sigmoid --task=digits --optimizer=sgd --learning_rate=0.1 \
        --pretrain_steps_per_layer=300 --pretrain_learning_rate=0.1 \
        --finetune_steps=500 --output_dir=runs/p

Every flag of trainers.train describes the network, the task and the
fine-tuning (except --num_steps: --finetune_steps); the --pretrain_* flags,
--tied_weights and --denoising describe phase 1. The layout of output_dir
is in trainers/pretraining.py; `python -m analysis.compare runs/p/finetune
runs/scratch` compares with a run from scratch. Running the same command
again resumes in whatever phase it stopped. Exit codes as trainers.train.
As there, --help and the flags' refusals come before TensorFlow is imported.

`--config=FILE` takes a pretraining run's config.json or a JSON
PretrainConfig ({"run": {RunConfig fields}, "steps_per_layer": 300, ...};
the suite starts its pretraining runs this way), whose values then need no
flags; flags given next to it override them.

Tested by tests/trainers/test_pretrain_main.py.
"""

import dataclasses
import os
import signal
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402

from analysis import cli, schema  # noqa: E402
from trainers import config as gz_config  # noqa: E402
from trainers import flags as gz_flags  # noqa: E402
from trainers import writer  # noqa: E402

PRETRAIN_STEPS_PER_LAYER = flags.DEFINE_integer(
    "pretrain_steps_per_layer",
    None,
    "Phase 1: autoencoder updates for each pretrained hidden layer.",
)
FINETUNE_STEPS = flags.DEFINE_integer(
    "finetune_steps",
    None,
    "Phase 2: supervised updates of the whole network (a scratch run with "
    "--num_steps equal to this has the same supervised budget).",
)
PRETRAIN_LAYERS = flags.DEFINE_list(
    "pretrain_layers",
    None,
    "Hidden-layer indices to pretrain, increasing (default: all, 0 first).",
)
PRETRAIN_OPTIMIZER = flags.DEFINE_enum(
    "pretrain_optimizer",
    gz_config.DEFAULT_OPTIMIZER,
    list(gz_config.OPTIMIZERS),
    "Phase 1 optimizer (a fresh one per layer).",
)
PRETRAIN_LEARNING_RATE = flags.DEFINE_float(
    "pretrain_learning_rate", None, "Phase 1 learning rate (default: Keras')."
)
TIED_WEIGHTS = flags.DEFINE_bool(
    "tied_weights",
    False,
    "Phase 1 decoders use the encoder's kernel transposed (own bias only).",
)
DENOISING = flags.DEFINE_float(
    "denoising",
    0.0,
    "Phase 1 masking noise: the fraction of each layer's input zeroed while "
    "training, in [0, 1) (0: a plain autoencoder).",
)


def config_from_flags() -> gz_config.PretrainConfig:
    """The (unresolved) PretrainConfig the parsed flags describe.

    With --config (a pretraining run's config.json, a JSON PretrainConfig
    as the suite writes it, or a RunConfig), the file's values count and
    only flags given next to it override them; a RunConfig file's
    `num_steps` is the fine-tuning budget.

    Raises:
      ValueError: a bad flag value or --config file, or --num_steps (use
        --finetune_steps).
    """
    if gz_flags._given("num_steps"):
        raise ValueError(
            "--num_steps does not apply to trainers.pretrain; give the supervised "
            "steps as --finetune_steps"
        )
    base = (
        gz_config.load_pretrain_config_file(gz_flags.CONFIG.value)
        if gz_flags.CONFIG.value
        else None
    )
    take = gz_flags._given if base is not None else (lambda name: True)
    steps = FINETUNE_STEPS.value if take("finetune_steps") else base.run.num_steps
    if steps is None or steps < 1:
        raise ValueError(
            f"finetune_steps must be positive (a whole number). Received: "
            f"finetune_steps={steps}"
        )
    run = gz_flags.config_from_flags(base.run if base is not None else None)
    run.num_steps = steps
    layers = PRETRAIN_LAYERS.value
    if layers is not None:
        try:
            layers = [int(i) for i in layers]
        except ValueError:
            raise ValueError(
                f"--pretrain_layers takes whole numbers. Received: {','.join(layers)}"
            ) from None
    given = {
        "steps_per_layer": ("pretrain_steps_per_layer", PRETRAIN_STEPS_PER_LAYER),
        "layers": ("pretrain_layers", layers),
        "optimizer": ("pretrain_optimizer", PRETRAIN_OPTIMIZER),
        "learning_rate": ("pretrain_learning_rate", PRETRAIN_LEARNING_RATE),
        "tied_weights": ("tied_weights", TIED_WEIGHTS),
        "denoising": ("denoising", DENOISING),
    }
    c = base if base is not None else gz_config.PretrainConfig()
    c = dataclasses.replace(c, run=run)
    for field, (flag, value) in given.items():
        if take(flag):
            setattr(c, field, getattr(value, "value", value))
    if base is not None and take("pretrain_optimizer"):
        # Another optimizer: the file's settings of the old one do not apply.
        c.optimizer_kwargs = {}
        if not take("pretrain_learning_rate"):
            c.learning_rate = None
    return c


def flags_text(c: gz_config.PretrainConfig) -> str:
    """Flags that replay the resolved config `c` (for --flagfile)."""
    lines = [
        f"--finetune_steps={c.run.num_steps}"
        if line.startswith("--num_steps=")
        else line
        for line in gz_flags.flags_text(c.run).splitlines()
    ]
    lines += [
        f"--pretrain_steps_per_layer={c.steps_per_layer}",
        f"--pretrain_optimizer={c.optimizer}",
        f"--pretrain_learning_rate={c.learning_rate!r}",
        f"--{'' if c.tied_weights else 'no'}tied_weights",
        f"--denoising={c.denoising!r}",
    ]
    if c.layers is not None:
        lines.append(f"--pretrain_layers={','.join(map(str, c.layers))}")
    return "\n".join(lines) + "\n"


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    signal.signal(signal.SIGTERM, _interrupt)
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    output_dir = gz_flags.OUTPUT_DIR.value
    try:
        config = config_from_flags()
        resolved = config.resolved()
        # TensorFlow only now: --help and the flags' refusals come without it.
        cli.import_keras()
        from trainers import pretraining

        built = pretraining.build(
            resolved,
            output_dir,
            overwrite=gz_flags.OVERWRITE.value,
            flags_text=flags_text(resolved),
        )
    except ValueError as e:  # every user mistake is refused before training
        cli.fail(e)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before training started\n")
        sys.exit(cli.EXIT_INTERRUPTED)
    try:
        result = built.train()
    except schema.RunDirError as e:
        cli.fail(e)
    except KeyboardInterrupt:
        status = writer.read_status(output_dir)
        sys.stderr.write(f"interrupted: {status.message if status else ''}\n")
        sys.exit(cli.EXIT_INTERRUPTED)
    logging.info("%s: %s", result.state, result.message)
    print(f"{result.state} at step {result.step}: {result.message}")
    print(f"run directory: {output_dir} (fine-tuning: {output_dir}/finetune)")
    if result.state == "diverged":
        sys.exit(cli.EXIT_DIVERGED)


def run_main():
    """Console-script entry point (gradzoo-pretrain)."""
    # The step counts are required too, unless --config gives them: checked
    # in config_from_flags, in one line.
    gz_flags.flags.mark_flag_as_required("output_dir")
    cli.run(main)


if __name__ == "__main__":
    run_main()
