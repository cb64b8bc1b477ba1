"""Shared absl flags of the trainer mains, and their mapping to a RunConfig.

Only the mains (train.py and later pretrain.py, suite.py) import this module:
the library code below them is flag-free. Model and optimizer flags default
to None, meaning "the builder's (or Keras') default"; the resolved value is
what config.json and flags.txt record.

Tested by tests/trainers/test_train_main.py.
"""

import inspect

from absl import flags, logging

import zoo
from trainers import runner
from zoo import blocks, rnn


def _positive(name):
    flags.register_validator(name, lambda v: v is None or v > 0, message="must be > 0")


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

# What is trained.
MODEL = flags.DEFINE_enum("model", "plain_mlp", zoo.list_models(), "Zoo model.")
TASK = flags.DEFINE_enum("task", "digits", zoo.list_tasks(), "Zoo task.")
DEPTH = flags.DEFINE_integer("depth", None, "Hidden layers.", lower_bound=1)
WIDTH = flags.DEFINE_integer("width", None, "Units per hidden layer.", lower_bound=1)
ACTIVATION = flags.DEFINE_enum("activation", None, blocks.ACTIVATIONS, "Activation.")
INITIALIZER = flags.DEFINE_enum(
    "initializer", None, blocks.INITIALIZERS, "Kernel initializer."
)
INIT_STD = flags.DEFINE_float("init_std", None, "Std of the small_normal init.")
NORM = flags.DEFINE_enum("norm", None, blocks.NORMS, "Normalization layer.")
L1 = flags.DEFINE_float("l1", None, "L1 kernel penalty.", lower_bound=0.0)
L2 = flags.DEFINE_float("l2", None, "L2 kernel penalty.", lower_bound=0.0)
UNITS = flags.DEFINE_integer("units", None, "Recurrent units per layer.", lower_bound=1)
NUM_LAYERS = flags.DEFINE_integer(
    "num_layers", None, "Stacked recurrent layers.", lower_bound=1
)
RECURRENT_INITIALIZER = flags.DEFINE_enum(
    "recurrent_initializer",
    None,
    rnn.RECURRENT_INITIALIZERS,
    "Recurrent kernel at init: spectral_radius x (orthogonal | identity | "
    "N(0, 1/n) rescaled).",
)
SPECTRAL_RADIUS = flags.DEFINE_float(
    "spectral_radius", None, "Spectral radius of the recurrent kernel at init."
)
UNIT_FORGET_BIAS = flags.DEFINE_bool(
    "unit_forget_bias", None, "lstm: forget-gate bias 1 at init."
)
RECURRENT_L1 = flags.DEFINE_float(
    "recurrent_l1", None, "L1 recurrent-kernel penalty.", lower_bound=0.0
)
RECURRENT_L2 = flags.DEFINE_float(
    "recurrent_l2", None, "L2 recurrent-kernel penalty.", lower_bound=0.0
)
_positive("init_std")
MODEL_FLAGS = (
    "depth",
    "width",
    "units",
    "num_layers",
    "activation",
    "initializer",
    "init_std",
    "recurrent_initializer",
    "spectral_radius",
    "unit_forget_bias",
    "norm",
    "l1",
    "l2",
    "recurrent_l1",
    "recurrent_l2",
)

# The task's own arguments (generated tasks).
SEQUENCE_LENGTH = flags.DEFINE_integer(
    "sequence_length", None, "Sequence tasks: time steps per example."
)
NUM_TRAIN = flags.DEFINE_integer(
    "num_train", None, "Generated tasks: training examples."
)
NUM_EVAL = flags.DEFINE_integer(
    "num_eval", None, "Generated tasks: evaluation examples."
)
DATA_SEED = flags.DEFINE_integer("data_seed", None, "Generated tasks: data seed.")
TASK_FLAGS = ("sequence_length", "num_train", "num_eval", "data_seed")

# How it is trained.
OPTIMIZER = flags.DEFINE_enum("optimizer", "sgd", list(runner.OPTIMIZERS), "Optimizer.")
LEARNING_RATE = flags.DEFINE_float(
    "learning_rate", None, "Learning rate (default: the Keras default)."
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
_positive("learning_rate")
LR_SCHEDULE = flags.DEFINE_enum(
    "lr_schedule",
    "constant",
    runner.LR_SCHEDULES,
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
for _name in ("clip_value", "clip_norm", "clip_global_norm"):
    _positive(_name)
_CLIP_FLAGS = {
    "clip_value": "value",
    "clip_norm": "norm",
    "clip_global_norm": "global_norm",
}


@flags.multi_flags_validator(
    list(_CLIP_FLAGS),
    message="set at most one of --clip_value, --clip_norm, --clip_global_norm",
)
def _one_clipping(values):
    return sum(v is not None for v in values.values()) <= 1


BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", 128, "Examples per micro-batch.", lower_bound=1
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
STRATEGY = flags.DEFINE_enum("strategy", "default", runner.STRATEGIES, "tf.distribute.")
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


def recipe_settings() -> dict:
    """{flag: value} the task's recipe supplies: each recipe flag not given.

    Given means on the command line, in a flagfile or set in code. The
    recipe's learning rate goes with its optimizer only, and its clipping
    applies only when no --clip_* flag is given.
    """
    f = flags.FLAGS
    recipe = zoo.task_spec(TASK.value).recipe if RECIPE.value else {}

    def given(name):
        return f[name].present or not f[name].using_default_value

    used = {}
    if "optimizer" in recipe and not given("optimizer"):
        used["optimizer"] = recipe["optimizer"]
        if "learning_rate" in recipe and not given("learning_rate"):
            used["learning_rate"] = recipe["learning_rate"]
    if "batch_size" in recipe and not given("batch_size"):
        used["batch_size"] = recipe["batch_size"]
    if not any(given(n) for n in _CLIP_FLAGS):
        used.update({k: v for k, v in recipe.items() if k in _CLIP_FLAGS})
    return used


def recipe_note() -> str:
    """ " (the task's recipe set ...)" for error messages, or ""."""
    used = recipe_settings()
    if not used:
        return ""
    settings = " ".join(f"--{k}={v}" for k, v in used.items())
    return f" (the task's recipe set {settings}; give the flag or --norecipe)"


def config_from_flags() -> runner.RunConfig:
    """The (unresolved) RunConfig the parsed flags describe."""
    f = flags.FLAGS
    used = recipe_settings()
    if used:
        logging.info(
            "task %s: its recipe sets %s (given flags win; --norecipe for none)",
            TASK.value,
            " ".join(f"--{k}={v}" for k, v in used.items()),
        )
    clipping, threshold = "none", 0.0
    for name, mode in _CLIP_FLAGS.items():
        value = used.get(name, f[name].value)
        if value is not None:
            clipping, threshold = mode, value
    optimizer = used.get("optimizer", OPTIMIZER.value)
    learning_rate = used.get("learning_rate", LEARNING_RATE.value)
    batch_size = used.get("batch_size", BATCH_SIZE.value)
    spec = zoo.model_spec(MODEL.value)
    takes = spec.defaults()
    model_kwargs = {}
    for name in MODEL_FLAGS:
        if f[name].value is None:
            continue
        if name not in takes:
            raise ValueError(f"--{name} does not apply to --model={MODEL.value}")
        model_kwargs[name] = f[name].value
    task_takes = inspect.signature(zoo.task_spec(TASK.value).loader).parameters
    task_kwargs = {}
    for name in TASK_FLAGS:
        if f[name].value is None:
            continue
        if name not in task_takes:
            raise ValueError(f"--{name} does not apply to --task={TASK.value}")
        task_kwargs[name] = f[name].value
    return runner.RunConfig(
        model=MODEL.value,
        model_kwargs=model_kwargs,
        task=TASK.value,
        task_kwargs=task_kwargs,
        optimizer=optimizer,
        learning_rate=learning_rate,
        optimizer_kwargs={
            k: f[k].value for k in runner.OPTIMIZER_HPARAMS if f[k].value is not None
        },
        lr_schedule=LR_SCHEDULE.value,
        lr_decay_steps=LR_DECAY_STEPS.value,
        lr_decay_rate=LR_DECAY_RATE.value,
        clipping=clipping,
        clip_threshold=threshold,
        batch_size=batch_size,
        grad_accum_steps=GRAD_ACCUM_STEPS.value,
        num_steps=NUM_STEPS.value,
        log_every_steps=LOG_EVERY_STEPS.value,
        eval_every_steps=EVAL_EVERY_STEPS.value,
        checkpoint_every_steps=CHECKPOINT_EVERY_STEPS.value,
        early_stopping_patience=EARLY_STOPPING_PATIENCE.value,
        early_stopping_min_delta=EARLY_STOPPING_MIN_DELTA.value,
        seed=SEED.value,
        strategy=STRATEGY.value,
        jit_compile=JIT_COMPILE.value,
        log_gradient_through_time=LOG_GRADIENT_THROUGH_TIME.value,
        data_dir=DATA_DIR.value,
    )


def flags_text(c: runner.RunConfig) -> str:
    """Flags that replay the resolved config `c` (for --flagfile)."""

    def line(name, value):
        if isinstance(value, bool):
            return f"--{name}" if value else f"--no{name}"
        return (
            f"--{name}={value!r}" if isinstance(value, float) else f"--{name}={value}"
        )

    lines = [line("model", c.model), line("task", c.task)]
    lines += [line(k, v) for k, v in c.task_kwargs.items() if k in TASK_FLAGS]
    lines += [line(k, v) for k, v in c.model_kwargs.items() if k in MODEL_FLAGS]
    lines += [line("optimizer", c.optimizer), line("learning_rate", c.learning_rate)]
    lines += [line(k, v) for k, v in c.optimizer_kwargs.items()]
    lines.append(line("lr_schedule", c.lr_schedule))
    if c.lr_schedule == "step":
        lines += [
            line("lr_decay_steps", c.lr_decay_steps),
            line("lr_decay_rate", c.lr_decay_rate),
        ]
    for name, mode in _CLIP_FLAGS.items():
        if c.clipping == mode:
            lines.append(line(name, c.clip_threshold))
    for name in (
        *runner.LOOP_COUNTS,
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
