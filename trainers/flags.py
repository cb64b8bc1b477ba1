"""Shared absl flags of the trainer mains, and their mapping to a RunConfig.

Only the mains import this module: the library code below them is
flag-free. Model and task flags are generated from the registered builders'
and loaders' signatures and docstrings (zoo/signature.py), so a new model
family's hyper-parameters need no flag plumbing: each becomes a flag with
its type, choices, bounds and help, `--helpfull` lists it, a flag the
chosen model does not take is refused by name, and flags.txt replays it.

Settings flags default to None, meaning "not set": the resolved RunConfig
fills them (the builder's or Keras' default, or the task's recipe), and the
resolved value is what config.json and flags.txt record.

`--config=FILE` starts from a JSON RunConfig (a run directory's config.json
or a file of RunConfig fields); flags given next to it override its values.

Tested by tests/trainers/test_train_main.py and tests/trainers/test_config_cli.py.
"""

import dataclasses

from absl import flags, logging

import zoo
from trainers import config as gz_config
from trainers.config import RunConfig

# Where.
OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Run directory: created, or resumed if it holds this run."
)
OVERWRITE = flags.DEFINE_bool(
    "overwrite",
    False,
    "Start the run in output_dir over (removes only the run's own files).",
)
DATA_DIR = flags.DEFINE_string(
    "data_dir",
    None,
    "TFDS data directory (default: $GRADZOO_DATA_DIR or "
    "~/tensorflow_datasets). Generated tasks are built there on first use.",
)
CONFIG = flags.DEFINE_string(
    "config",
    None,
    "JSON RunConfig to run: a run directory's config.json, or an object of "
    "RunConfig fields. Flags given next to it override its values.",
)

# What is trained.
MODEL = flags.DEFINE_enum("model", "plain_mlp", zoo.list_models(), "Zoo model.")
TASK = flags.DEFINE_enum("task", "digits", zoo.list_tasks(), "Zoo task.")


def _collect(specs) -> dict[str, tuple]:
    """{argument: (Argument, [owner names])} over registry entries."""
    out = {}
    for spec in specs:
        for name, arg in spec.arguments().items():
            if name in out:
                first, owners = out[name]
                if (first.type, first.choices) != (arg.type, arg.choices):
                    # Different choices per family (e.g. norm): the union.
                    choices = (
                        tuple(dict.fromkeys((*first.choices, *arg.choices)))
                        if first.choices and arg.choices
                        else None
                    )
                    first = dataclasses.replace(first, choices=choices)
                if arg.help and arg.help not in first.help.split(" | "):
                    # Families that document an argument differently (a CNN's
                    # depth counts weight layers, an MLP's hidden layers):
                    # every wording, in registry order.
                    joined = f"{first.help} | {arg.help}" if first.help else arg.help
                    first = dataclasses.replace(first, help=joined)
                out[name] = (first, [*owners, spec.name])
            else:
                out[name] = (arg, [spec.name])
    return out


def _define(arg, owners: list[str], what: str) -> None:
    """One flag for a builder or loader argument, default None (not set)."""
    help_text = f"{arg.help or arg.name} [{what} {', '.join(owners)}]"
    bound = {"lower_bound": arg.lower_bound} if arg.lower_bound is not None else {}
    if arg.choices is not None:
        flags.DEFINE_enum(arg.name, None, [str(c) for c in arg.choices], help_text)
    elif arg.type is bool:
        flags.DEFINE_bool(arg.name, None, help_text)
    elif arg.type is int:
        flags.DEFINE_integer(arg.name, None, help_text, **bound)
    elif arg.type is float:
        flags.DEFINE_float(arg.name, None, help_text, **bound)
    else:
        flags.DEFINE_string(arg.name, None, help_text)
    # Other checks (e.g. positive) happen in RunConfig.resolved(), with the
    # builder's own message.


# Every registered builder's and loader's own arguments, one flag each.
MODEL_ARGUMENTS = _collect(zoo.model_spec(m) for m in zoo.list_models())
TASK_ARGUMENTS = _collect(zoo.task_spec(t) for t in zoo.list_tasks())
for _name, (_arg, _owners) in {**MODEL_ARGUMENTS, **TASK_ARGUMENTS}.items():
    _define(_arg, _owners, "model" if _name in MODEL_ARGUMENTS else "task")

# How it is trained.
OPTIMIZER = flags.DEFINE_enum(
    "optimizer",
    None,
    list(gz_config.OPTIMIZERS),
    f"Optimizer (default: the task's recipe, else {gz_config.DEFAULT_OPTIMIZER}).",
)
LEARNING_RATE = flags.DEFINE_float(
    "learning_rate",
    None,
    "Learning rate (default: the recipe's with its optimizer, else Keras').",
)
MOMENTUM = flags.DEFINE_float("momentum", None, "momentum/nesterov/rmsprop momentum.")
RHO = flags.DEFINE_float("rho", None, "rmsprop/adadelta decay.")
BETA_1 = flags.DEFINE_float("beta_1", None, "adam/nadam/adamw first-moment decay.")
BETA_2 = flags.DEFINE_float("beta_2", None, "adam/nadam/adamw second-moment decay.")
EPSILON = flags.DEFINE_float("epsilon", None, "Optimizer epsilon.")
INITIAL_ACCUMULATOR_VALUE = flags.DEFINE_float(
    "initial_accumulator_value", None, "adagrad starting accumulator."
)
WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", None, "Decoupled weight decay, any optimizer (adamw: 0.004)."
)
LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    "constant",
    gz_config.LR_SCHEDULES,
    "constant; cosine (to 0 at num_steps); "
    "step (x lr_decay_rate every lr_decay_steps).",
)
LR_DECAY_STEPS = flags.DEFINE_integer("lr_decay_steps", 0, "Step schedule period.")
LR_DECAY_RATE = flags.DEFINE_float("lr_decay_rate", 0.1, "Step schedule factor.")
CLIP_VALUE = flags.DEFINE_float("clip_value", None, "Clip each gradient entry.")
CLIP_NORM = flags.DEFINE_float("clip_norm", None, "Clip each variable's gradient norm.")
CLIP_GLOBAL_NORM = flags.DEFINE_float(
    "clip_global_norm", None, "Clip the norm of the whole gradient."
)
for _name in ("learning_rate", "clip_value", "clip_norm", "clip_global_norm"):
    flags.register_validator(
        _name,
        lambda v: v is None or 0 < v < float("inf"),
        message="must be > 0 and finite",
    )
# Clipping flag -> RunConfig.clipping mode.
CLIP_FLAGS = {
    "clip_value": "value",
    "clip_norm": "norm",
    "clip_global_norm": "global_norm",
}


@flags.multi_flags_validator(
    list(CLIP_FLAGS),
    message="set at most one of --clip_value, --clip_norm, --clip_global_norm",
)
def _one_clipping(values):
    return sum(v is not None for v in values.values()) <= 1


BATCH_SIZE = flags.DEFINE_integer(
    "batch_size",
    None,
    "Examples per micro-batch (default: the task's recipe, else "
    f"{gz_config.DEFAULT_BATCH_SIZE}).",
    lower_bound=1,
)
GRAD_ACCUM_STEPS = flags.DEFINE_integer(
    "grad_accum_steps", 1, "Micro-batches per update.", lower_bound=1
)
NUM_STEPS = flags.DEFINE_integer("num_steps", 1000, "Optimizer updates.", lower_bound=1)
LOG_EVERY_STEPS = flags.DEFINE_integer(
    "log_every_steps",
    100,
    "Metrics row and gradient norms every N steps.",
    lower_bound=1,
)
EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", 500, "Evaluate every N steps (and at 0).", lower_bound=1
)
CHECKPOINT_EVERY_STEPS = flags.DEFINE_integer(
    "checkpoint_every_steps", 1000, "Checkpoint every N steps.", lower_bound=1
)
EARLY_STOPPING_PATIENCE = flags.DEFINE_integer(
    "early_stopping_patience",
    0,
    "Stop after N evaluations without improvement of the task metric (0: off).",
    lower_bound=0,
)
EARLY_STOPPING_MIN_DELTA = flags.DEFINE_float(
    "early_stopping_min_delta",
    0.0,
    "Smallest improvement that counts.",
    lower_bound=0.0,
)
SEED = flags.DEFINE_integer("seed", 0, "Seed of init, data order and dropout.")
STRATEGY = flags.DEFINE_enum(
    "strategy", "default", gz_config.STRATEGIES, "tf.distribute."
)
NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices",
    0,
    "Split the CPU into N logical devices (for "
    "--strategy=mirrored without GPUs); 0 leaves it alone.",
    lower_bound=0,
)
RECIPE = flags.DEFINE_bool(
    "recipe",
    True,
    "Use the task's recipe (long-range sequence tasks: adam, learning rate "
    "1e-3, batch 64, global clip 1) for those of --optimizer, "
    "--learning_rate, --batch_size and --clip_* not given; --norecipe uses "
    "the plain defaults (sgd, Keras' rate, 128, no clipping).",
)
JIT_COMPILE = flags.DEFINE_bool(
    "jit_compile", False, "XLA-compile the step (measured slower on CPU)."
)
LOG_GRADIENT_THROUGH_TIME = flags.DEFINE_bool(
    "log_gradient_through_time",
    False,
    "Recurrent models: at logging steps, record ||dL/dh_t|| and ||dL/dx_t|| "
    "for every time step t of a fixed eval batch (gradient_through_time.jsonl).",
)

# RunConfig fields that are one flag of the same name.
_PLAIN_FIELDS = (
    "model",
    "task",
    "optimizer",
    "learning_rate",
    "lr_schedule",
    "lr_decay_steps",
    "lr_decay_rate",
    "batch_size",
    "grad_accum_steps",
    "num_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
    "early_stopping_patience",
    "early_stopping_min_delta",
    "seed",
    "strategy",
    "jit_compile",
    "log_gradient_through_time",
    "recipe",
    "data_dir",
)


def _given(name: str) -> bool:
    """Set on the command line, in a flagfile, or in code."""
    f = flags.FLAGS[name]
    return f.present or not f.using_default_value


def config_from_flags(base: RunConfig | None = None) -> RunConfig:
    """The (unresolved) RunConfig the parsed flags describe.

    Without --config, every settings flag counts (None ones stay "not set").
    With --config, the file's values count, and only flags given next to it
    override them. `base`: the RunConfig already read from --config (a
    main whose file holds more than a RunConfig, trainers/pretrain.py).

    Raises:
      ValueError: a bad --config file, or a flag the model or task does not take.
    """
    f = flags.FLAGS
    if base is None and CONFIG.value:
        base = gz_config.load_config_file(CONFIG.value)
    take = _given if base is not None else (lambda name: True)
    c = dataclasses.replace(base) if base is not None else RunConfig()
    for name in _PLAIN_FIELDS:
        if take(name):
            setattr(c, name, f[name].value)
    if base is not None and (_given("model") or _given("task")):
        # A new model or task: the file's arguments for the old one stay
        # only where the new one takes them, so the override is coherent.
        c.model_kwargs = _keep(c.model_kwargs, zoo.model_spec(c.model).defaults())
        c.task_kwargs = _keep(c.task_kwargs, zoo.task_spec(c.task).arguments())
    model_takes = zoo.model_spec(c.model).defaults()
    task_takes = zoo.task_spec(c.task).arguments()
    c.model_kwargs = dict(c.model_kwargs)
    for name in MODEL_ARGUMENTS:
        if f[name].value is not None and take(name):
            if name not in model_takes:
                raise ValueError(f"--{name} does not apply to --model={c.model}")
            c.model_kwargs[name] = _typed(name, f[name].value, MODEL_ARGUMENTS)
    c.task_kwargs = dict(c.task_kwargs)
    for name in TASK_ARGUMENTS:
        if f[name].value is not None and take(name):
            if name not in task_takes:
                raise ValueError(f"--{name} does not apply to --task={c.task}")
            c.task_kwargs[name] = f[name].value
    c.optimizer_kwargs = dict(c.optimizer_kwargs)
    for name in gz_config.OPTIMIZER_HPARAMS:
        if f[name].value is not None and take(name):
            c.optimizer_kwargs[name] = f[name].value
    for name, mode in CLIP_FLAGS.items():
        if f[name].value is not None and take(name):
            c.clipping, c.clip_threshold = mode, f[name].value
    if base is not None:
        overridden = [
            f"--{n}={f[n].value}" for n in f if _given(n) and n in _settings()
        ]
        if overridden:
            logging.info(
                "--config %s: overridden by %s", CONFIG.value, " ".join(overridden)
            )
    return c


def _keep(kwargs: dict, takes) -> dict:
    return {k: v for k, v in kwargs.items() if k in takes}


def _typed(name, value, arguments):
    """An enum flag's string back as the argument's type (e.g. an int choice)."""
    arg = arguments[name][0]
    return arg.type(value) if arg.choices is not None else value


def _settings() -> set[str]:
    """Every flag that sets a RunConfig field."""
    return {
        *_PLAIN_FIELDS,
        *MODEL_ARGUMENTS,
        *TASK_ARGUMENTS,
        *gz_config.OPTIMIZER_HPARAMS,
        *CLIP_FLAGS,
    }


def log_recipe(c: RunConfig) -> None:
    """Says which settings the task's recipe supplied (for the log)."""
    used = recipe_flags(c)
    if used:
        logging.info(
            "task %s: its recipe sets %s (given flags win; --norecipe for none)",
            c.task,
            used,
        )


def recipe_flags(c: RunConfig) -> str:
    """The recipe's settings for `c` as flags, e.g. "--optimizer=adam ..."."""
    used = c.recipe_settings()
    parts = [f"--{k}={v}" for k, v in used.items() if k in _PLAIN_FIELDS]
    if "clipping" in used:
        flag = {mode: name for name, mode in CLIP_FLAGS.items()}[used["clipping"]]
        parts.append(f"--{flag}={used['clip_threshold']}")
    return " ".join(parts)


def recipe_note(c: RunConfig) -> str:
    """ " (the task's recipe set ...)" for error messages, or ""."""
    used = recipe_flags(c)
    return (
        f" (the task's recipe set {used}; give the flag or --norecipe)" if used else ""
    )


def flags_text(c: RunConfig) -> str:
    """Flags that replay the resolved config `c` (for --flagfile)."""

    def line(name, value):
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no{name}"
        return (
            f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}"
        )

    lines = [line("model", c.model), line("task", c.task)]
    lines += [line(k, v) for k, v in c.task_kwargs.items()]
    lines += [line(k, v) for k, v in c.model_kwargs.items()]
    lines += [line("optimizer", c.optimizer), line("learning_rate", c.learning_rate)]
    lines += [line(k, v) for k, v in c.optimizer_kwargs.items()]
    lines.append(line("lr_schedule", c.lr_schedule))
    if c.lr_schedule == "step":
        lines += [
            line("lr_decay_steps", c.lr_decay_steps),
            line("lr_decay_rate", c.lr_decay_rate),
        ]
    for name, mode in CLIP_FLAGS.items():
        if c.clipping == mode:
            lines.append(line(name, c.clip_threshold))
    for name in (
        *gz_config.LOOP_COUNTS,
        "early_stopping_patience",
        "early_stopping_min_delta",
        "seed",
        "strategy",
        "jit_compile",
        "log_gradient_through_time",
    ):
        lines.append(line(name, getattr(c, name)))
    if NUM_CPU_DEVICES.value:
        lines.append(line("num_cpu_devices", NUM_CPU_DEVICES.value))
    # Every setting above is explicit: a task recipe must not add clipping.
    lines.append(line("recipe", False))
    if c.data_dir:
        lines.append(line("data_dir", c.data_dir))
    return "\n".join(lines) + "\n"
