"""RunConfig: everything that decides what a run computes, in one object.

Flag-free. trainers/flags.py turns flags into a RunConfig, `--config` reads
one from JSON, the suite builds them directly; `resolved()` applies the
task's recipe, fills every default explicitly and checks every value, so
the saved config.json alone says what ran and replays it.

    >>> from trainers.config import RunConfig
    >>> c = RunConfig(model="lstm", task="adding", num_steps=3000).resolved()
    >>> c.optimizer, c.learning_rate, c.batch_size, c.clipping
    ('adam', 0.001, 64, 'global_norm')

Tested by tests/trainers/test_config.py.
"""

import dataclasses
import json
import os
from typing import TYPE_CHECKING

import zoo
from analysis import schema
from zoo import signature

if TYPE_CHECKING:  # imported by make_optimizer: resolving a config needs none
    import keras

# name -> (Keras class, presets, hyper-parameters a user may set). Presets
# turn one Keras class into the textbook variants (momentum, Nesterov);
# everything else keeps Keras' own defaults, which the resolved config
# records explicitly (note Adadelta's Keras default learning rate is 0.001,
# not the paper's 1.0).
OPTIMIZERS = {
    "sgd": ("SGD", {}, ()),
    "momentum": ("SGD", {"momentum": 0.9}, ("momentum",)),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}, ("momentum",)),
    "adagrad": ("Adagrad", {}, ("initial_accumulator_value", "epsilon")),
    "rmsprop": ("RMSprop", {}, ("rho", "momentum", "epsilon")),
    "adadelta": ("Adadelta", {}, ("rho", "epsilon")),
    "adam": ("Adam", {}, ("beta_1", "beta_2", "epsilon")),
    "nadam": ("Nadam", {}, ("beta_1", "beta_2", "epsilon")),
    "adamw": ("AdamW", {}, ("beta_1", "beta_2", "epsilon")),
}
# Keras' defaults of the arguments above (keras.optimizers.<class>.__init__),
# written out so that resolving a config needs no Keras import: a command
# refuses bad settings before TensorFlow starts. tests/trainers/
# test_config.py checks them against the installed Keras.
KERAS_DEFAULTS = {
    "SGD": {"learning_rate": 0.01, "momentum": 0.0, "weight_decay": None},
    "Adagrad": {
        "learning_rate": 0.001,
        "initial_accumulator_value": 0.1,
        "epsilon": 1e-07,
        "weight_decay": None,
    },
    "RMSprop": {
        "learning_rate": 0.001,
        "rho": 0.9,
        "momentum": 0.0,
        "epsilon": 1e-07,
        "weight_decay": None,
    },
    "Adadelta": {
        "learning_rate": 0.001,
        "rho": 0.95,
        "epsilon": 1e-07,
        "weight_decay": None,
    },
    **{
        name: {
            "learning_rate": 0.001,
            "beta_1": 0.9,
            "beta_2": 0.999,
            "epsilon": 1e-07,
            "weight_decay": 0.004 if name == "AdamW" else None,
        }
        for name in ("Adam", "Nadam", "AdamW")
    },
}
# Every Keras optimizer takes decoupled weight decay (AdamW's default 0.004,
# the others' None = off); it is settable on all of them.
_COMMON_HPARAMS = ("weight_decay",)
# Decay rates live in [0, 1); the rest must be >= 0 (epsilon > 0).
_UNIT_INTERVAL = ("momentum", "rho", "beta_1", "beta_2")
_FLOAT32_MAX = 3.4028234e38
OPTIMIZER_HPARAMS = (
    "momentum",
    "rho",
    "beta_1",
    "beta_2",
    "epsilon",
    "initial_accumulator_value",
    "weight_decay",
)
LR_SCHEDULES = ("constant", "cosine", "step")
CLIPPING = ("none", "value", "norm", "global_norm")
STRATEGIES = ("default", "one_device", "mirrored", "tpu", "multi_worker")
# The loop's sizes and cadences, each a positive count.
LOOP_COUNTS = (
    "batch_size",
    "grad_accum_steps",
    "num_steps",
    "log_every_steps",
    "eval_every_steps",
    "checkpoint_every_steps",
)
# Fields that may differ between a run and its resume: where things are,
# and the recipe switch (whose effect the resolved fields already show).
NOT_COMPARED = ("data_dir", "versions", "recipe")
# The settings a task's recipe may supply (zoo/tasks/base.py TaskSpec).
RECIPE_FIELDS = (
    "optimizer",
    "learning_rate",
    "batch_size",
    "clipping",
    "clip_threshold",
)
DEFAULT_OPTIMIZER = "sgd"
DEFAULT_BATCH_SIZE = 128


@dataclasses.dataclass
class RunConfig:
    """Everything that decides what a run computes.

    Fields left None are "not set": `resolved()` takes them from the task's
    recipe (when `recipe` is on and the task has one), else from the plain
    defaults (sgd at Keras' rate, batch 128, no clipping). Step counts are
    optimizer updates; each update sees `batch_size * grad_accum_steps`
    examples, in `grad_accum_steps` micro-batches of `batch_size`.
    """

    model: str = "plain_mlp"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    task: str = "digits"
    task_kwargs: dict = dataclasses.field(default_factory=dict)
    optimizer: str | None = None  # None: the recipe's, else sgd
    learning_rate: float | None = None  # None: the recipe's, else Keras'
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    lr_schedule: str = "constant"
    lr_decay_steps: int = 0  # "step" schedule: decay every N steps
    lr_decay_rate: float = 0.1
    clipping: str | None = None  # None: the recipe's, else "none"
    clip_threshold: float | None = None
    batch_size: int | None = None  # None: the recipe's, else 128
    grad_accum_steps: int = 1
    num_steps: int = 1000
    log_every_steps: int = 100
    eval_every_steps: int = 500
    checkpoint_every_steps: int = 1000
    early_stopping_patience: int = 0  # evaluations without improvement; 0: off
    early_stopping_min_delta: float = 0.0
    seed: int = 0
    strategy: str = "default"
    jit_compile: bool = False
    log_gradient_through_time: bool = False  # recurrent models only
    recipe: bool = True  # apply the task's recipe to the settings left unset
    data_dir: str | None = None

    def recipe_settings(self) -> dict:
        """{field: value} that the task's recipe supplies to this config.

        The recipe fills only fields left None; its learning rate goes with
        its optimizer only, and its clipping with its threshold.
        """
        if not self.recipe:
            return {}
        recipe = zoo.task_spec(self.task).recipe
        used = {}
        if self.optimizer is None and "optimizer" in recipe:
            used["optimizer"] = recipe["optimizer"]
            if self.learning_rate is None and "learning_rate" in recipe:
                used["learning_rate"] = recipe["learning_rate"]
        if self.batch_size is None and "batch_size" in recipe:
            used["batch_size"] = recipe["batch_size"]
        if (
            self.clipping is None
            and self.clip_threshold is None
            and "clipping" in recipe
        ):
            used["clipping"] = recipe["clipping"]
            used["clip_threshold"] = recipe["clip_threshold"]
        return used

    def resolved(self) -> "RunConfig":
        """A validated copy with the recipe applied and every default explicit.

        Resolving a resolved config changes nothing.

        Raises:
          ValueError: one line naming the offending setting.
        """
        _check_types(self)
        spec = zoo.model_spec(self.model)
        task_spec = zoo.task_spec(self.task)
        c = dataclasses.replace(self, **self.recipe_settings())
        if task_spec.input_kind not in spec.input_kinds:
            raise ValueError(
                f"Model '{c.model}' takes {' or '.join(spec.input_kinds)} inputs, "
                f"but task '{c.task}' gives {task_spec.input_kind} inputs."
            )
        if c.log_gradient_through_time and "sequence" not in spec.input_kinds:
            raise ValueError(
                f"log_gradient_through_time needs a recurrent model; "
                f"'{c.model}' has no recurrent layer."
            )
        c.model_kwargs = spec.resolve(**c.model_kwargs)
        c.task_kwargs = task_spec.resolve(**c.task_kwargs)
        c.optimizer = c.optimizer or DEFAULT_OPTIMIZER
        c.optimizer_kwargs, c.learning_rate = _resolve_optimizer(
            c.optimizer, c.optimizer_kwargs, c.learning_rate
        )
        if c.batch_size is None:
            c.batch_size = DEFAULT_BATCH_SIZE
        _check_choice("lr_schedule", c.lr_schedule, LR_SCHEDULES)
        _check_choice("strategy", c.strategy, STRATEGIES)
        for name in LOOP_COUNTS:
            _check_count(name, getattr(c, name))
        if c.clipping is None and c.clip_threshold is not None:
            raise ValueError(
                f"clip_threshold={c.clip_threshold} is set but clipping is not; "
                f"set clipping to one of {', '.join(CLIPPING[1:])}."
            )
        c.clipping = c.clipping or "none"
        _check_choice("clipping", c.clipping, CLIPPING)
        if c.clipping == "none":
            c.clip_threshold = 0.0
        else:
            _check_positive("clip_threshold", c.clip_threshold)
        if c.lr_schedule == "step":
            _check_count("lr_decay_steps", c.lr_decay_steps)
            _check_positive("lr_decay_rate", c.lr_decay_rate)
        elif c.lr_decay_steps:
            raise ValueError(
                f"lr_decay_steps applies to lr_schedule 'step', not '{c.lr_schedule}'."
            )
        else:
            c.lr_decay_steps, c.lr_decay_rate = 0, 0.0
        if c.data_dir:
            c.data_dir = os.path.abspath(os.path.expanduser(c.data_dir))
        if not (
            c.early_stopping_patience >= 0
            and 0 <= c.early_stopping_min_delta < _FLOAT32_MAX
        ):
            raise ValueError(
                "early_stopping_patience and early_stopping_min_delta must be >= 0. "
                f"Received: {c.early_stopping_patience}, {c.early_stopping_min_delta}"
            )
        if c.jit_compile and c.strategy in ("mirrored", "tpu", "multi_worker"):
            raise ValueError(
                f"jit_compile works with strategy default or one_device, "
                f"not {c.strategy}."
            )
        return c

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """A RunConfig from its fields; an unknown field is a ValueError."""
        _check_fields(cls, d)
        return cls(**d)


def load_config_file(path: str) -> RunConfig:
    """The RunConfig in a JSON file: a run directory's config.json (any
    readable format) or a plain object of RunConfig fields.

    Raises:
      ValueError: one line naming the file and what is wrong with it.
    """
    d = _read_config_object(path)
    if schema.FORMAT_KEY in d:
        d = _record(path, d).config
    try:
        return RunConfig.from_dict(d)
    except ValueError as e:
        raise ValueError(f"--config file {path}: {e}") from None


def load_pretrain_config_file(path: str) -> "PretrainConfig":
    """The PretrainConfig in a JSON file: a pretraining run's config.json, an
    object of PretrainConfig fields (`run` an object of RunConfig fields),
    or anything `load_config_file` reads (then phase 1 is not set).

    Raises:
      ValueError: one line naming the file and what is wrong with it.
    """
    d = _read_config_object(path)
    if schema.FORMAT_KEY in d:
        record = _record(path, d)
        d = {**(record.pretraining or {}), "run": record.config}
    elif "run" not in d:
        return PretrainConfig(run=load_config_file(path))
    if not isinstance(d["run"], dict):
        raise ValueError(f"--config file {path}: 'run' must be an object")
    try:
        return PretrainConfig.from_dict(d)
    except ValueError as e:
        raise ValueError(f"--config file {path}: {e}") from None


def _record(path: str, d: dict) -> schema.RunRecord:
    try:
        return schema.RunRecord.from_json(d)
    except schema.RunDirError as e:
        raise ValueError(f"--config file {path}: {e}") from None


def _read_config_object(path: str) -> dict:
    try:
        with open(os.path.expanduser(path), "rb") as f:
            d = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"--config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--config file {path} cannot be read ({e})") from None
    except ValueError as e:
        raise ValueError(f"--config file {path} is not JSON ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(
            f"--config file {path} holds a JSON {type(d).__name__}, not an object"
        )
    return d


def upgrade_record(old: schema.RunRecord) -> schema.RunRecord:
    """A record an earlier gradzoo wrote, restated in today's terms.

    Settings added since then take their defaults, which is what those runs
    did (no gradient-through-time log, no per-step outputs, the task's
    default arguments), so such a run resumes instead of being refused. A
    config that no longer resolves is returned as it was, for the
    comparison to name what differs.
    """
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = {k: v for k, v in old.config.items() if k in fields}
    try:
        config = RunConfig.from_dict(config).resolved().to_dict()
    except (KeyError, TypeError, ValueError):
        config = old.config
    task_info = {"output_per_step": False, **old.task_info}
    return dataclasses.replace(old, config=config, task_info=task_info)


def _check_fields(cls, d: dict) -> None:
    """Refuses keys of `d` that are not fields of dataclass `cls`."""
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ValueError(
            f"unknown {cls.__name__} field {', '.join(unknown)} "
            f"(known: {', '.join(names)})"
        )


def _check_types(c: RunConfig) -> None:
    """Refuses values of the wrong type before anything uses them."""
    for name in ("model", "task", "lr_schedule", "strategy"):
        if not isinstance(getattr(c, name), str):
            raise ValueError(f"{name} must be a string. Received: {getattr(c, name)!r}")
    for name in ("model_kwargs", "task_kwargs", "optimizer_kwargs"):
        if not isinstance(getattr(c, name), dict):
            raise ValueError(f"{name} must be a dict. Received: {getattr(c, name)!r}")
    for name in ("jit_compile", "log_gradient_through_time", "recipe"):
        if not isinstance(getattr(c, name), bool):
            raise ValueError(
                f"{name} must be true or false. Received: {getattr(c, name)!r}"
            )


def _check_choice(name, value, known):
    if value not in known:
        raise ValueError(f"Unknown {name} '{value}'. Known: {', '.join(known)}.")


def _check_count(name, value):
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(
            f"{name} must be positive (a whole number). Received: {name}={value!r}"
        )


def _check_positive(name, value):
    if not (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 < value < _FLOAT32_MAX
    ):
        raise ValueError(
            f"{name} must be positive and finite. Received: {name}={value}"
        )
    if signature.is_float32_zero(value):
        # 1e-50 passes the check above and is 0.0 where it is used: a run
        # that silently does not train.
        raise ValueError(
            f"{name} is 0 in float32, the precision it is used in. "
            f"Received: {name}={value}"
        )


def _resolve_optimizer(name, kwargs, learning_rate):
    """(explicit hyper-parameters, learning rate) for optimizer `name`."""
    if name not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer '{name}'. Known optimizers: {', '.join(OPTIMIZERS)}."
        )
    class_name, presets, own = OPTIMIZERS[name]
    settable = own + _COMMON_HPARAMS
    unknown = sorted(set(kwargs) - set(settable))
    if unknown:
        raise ValueError(
            f"Optimizer '{name}' takes no {', '.join(unknown)} "
            f"(it takes: {', '.join(settable)})."
        )
    defaults = KERAS_DEFAULTS[class_name]
    resolved = {k: defaults[k] for k in settable}
    resolved.update({k: v for k, v in presets.items() if k in settable})
    resolved.update(kwargs)
    if resolved["weight_decay"] is None:
        resolved["weight_decay"] = 0.0
    for k, v in resolved.items():
        low_ok = v > 0 if k == "epsilon" else v >= 0
        high_ok = v < 1 if k in _UNIT_INTERVAL else v < _FLOAT32_MAX
        if not (isinstance(v, (int, float)) and low_ok and high_ok):
            bounds = (
                "in [0, 1)"
                if k in _UNIT_INTERVAL
                else ("positive and finite" if k == "epsilon" else ">= 0 and finite")
            )
            raise ValueError(f"{k} must be {bounds}. Received: {k}={v}")
    if learning_rate is None:
        learning_rate = defaults["learning_rate"]
    _check_positive("learning_rate", learning_rate)
    return resolved, float(learning_rate)


def make_optimizer(c: RunConfig) -> "keras.optimizers.Optimizer":
    """The Keras optimizer for a resolved config.

    Clipping is not handed to Keras: the train step clips the all-reduced
    gradient itself (see trainers/loop.py for why).
    """
    import keras

    name, presets, _ = OPTIMIZERS[c.optimizer]
    kwargs = {**presets, **c.optimizer_kwargs}
    if not kwargs["weight_decay"] and name != "AdamW":
        # Keras' None skips the decay ops; 0.0 would still run them each step.
        del kwargs["weight_decay"]
    return getattr(keras.optimizers, name)(learning_rate=make_schedule(c), **kwargs)


def make_schedule(c: RunConfig):
    """The learning rate: a float, or a Keras schedule of the update count."""
    import keras

    if c.lr_schedule == "cosine":  # to 0 at num_steps
        return keras.optimizers.schedules.CosineDecay(c.learning_rate, c.num_steps)
    if c.lr_schedule == "step":  # x lr_decay_rate every lr_decay_steps
        return keras.optimizers.schedules.ExponentialDecay(
            c.learning_rate, c.lr_decay_steps, c.lr_decay_rate, staircase=True
        )
    return c.learning_rate


@dataclasses.dataclass
class PretrainConfig:
    """A greedy layer-wise pretraining run, then fine-tuning, in one object.

    `run` is the network, the task and the fine-tuning: an ordinary
    RunConfig whose `num_steps` are the supervised (fine-tuning) steps, so
    a run from scratch with the same `run` has the same supervised budget.
    The other fields are phase 1's: `steps_per_layer` updates for each
    hidden layer in `layers` (None: all of them, input side first), with
    their own optimizer (sgd at Keras' rate unless set) and the run's batch
    size, seed and cadences; `tied_weights` and `denoising` shape the
    autoencoder (zoo/pretraining.py `layer_autoencoder`).
    """

    run: RunConfig = dataclasses.field(default_factory=RunConfig)
    steps_per_layer: int | None = None
    layers: list | None = None
    optimizer: str = DEFAULT_OPTIMIZER
    learning_rate: float | None = None
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    tied_weights: bool = False
    denoising: float = 0.0

    def resolved(self) -> "PretrainConfig":
        """A validated copy with every default explicit (idempotent).

        Checks what can be checked without the data: the model has a dense
        hidden stack, the step count, the layer indices' form, the noise
        rate, the optimizer. Whether the indices exist in the built network
        is checked by trainers/pretraining.py before anything is written.

        Raises:
          ValueError: one line naming the offending setting.
        """
        if not isinstance(self.run, RunConfig):
            raise ValueError(f"run must be a RunConfig. Received: {self.run!r}")
        _check_has_dense_stack(self.run.model)
        run = self.run.resolved()
        if run.strategy != "default":
            raise ValueError(
                f"pretraining runs with strategy default, not {run.strategy}."
            )
        c = dataclasses.replace(self, run=run)
        _check_count_named(
            "pretrain_steps_per_layer", c.steps_per_layer, "steps_per_layer"
        )
        if c.layers is not None:
            if not isinstance(c.layers, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0
                for i in c.layers
            ):
                raise ValueError(
                    "pretrain_layers must be hidden-layer indices >= 0. "
                    f"Received: pretrain_layers={c.layers}"
                )
            c.layers = list(c.layers)
            if not c.layers or c.layers != sorted(set(c.layers)):
                raise ValueError(
                    "pretrain_layers must be distinct and increasing (the greedy "
                    f"schedule goes up the stack). Received: pretrain_layers="
                    f"{c.layers}"
                )
        if not (
            isinstance(c.denoising, (int, float))
            and not isinstance(c.denoising, bool)
            and 0 <= c.denoising < 1
        ):
            raise ValueError(
                "denoising (the fraction of code entries masked) must be in "
                f"[0, 1). Received: denoising={c.denoising}"
            )
        c.denoising = float(c.denoising)
        if not isinstance(c.tied_weights, bool):
            raise ValueError(
                f"tied_weights must be true or false. Received: {c.tied_weights!r}"
            )
        if not isinstance(c.optimizer_kwargs, dict):
            raise ValueError(
                f"pretrain optimizer_kwargs must be a dict. Received: "
                f"{c.optimizer_kwargs!r}"
            )
        c.optimizer_kwargs, c.learning_rate = _resolve_optimizer(
            c.optimizer, c.optimizer_kwargs, c.learning_rate
        )
        return c

    def phase_config(self) -> RunConfig:
        """The RunConfig of one pretraining phase (resolved `self` only).

        The run's model, task, batch size, seed and cadences; phase 1's
        optimizer at a constant rate, no clipping, no early stopping.
        """
        return dataclasses.replace(
            self.run,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            optimizer_kwargs=dict(self.optimizer_kwargs),
            lr_schedule="constant",
            lr_decay_steps=0,
            clipping="none",
            clip_threshold=None,
            num_steps=self.steps_per_layer,
            early_stopping_patience=0,
            recipe=False,
        ).resolved()

    def pretraining_dict(self) -> dict:
        """Every field but `run`: config.json's `pretraining` entry."""
        d = dataclasses.asdict(self)
        del d["run"]
        return d

    def to_dict(self) -> dict:
        return {"run": self.run.to_dict(), **self.pretraining_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> "PretrainConfig":
        """A PretrainConfig from its fields; an unknown field is a ValueError."""
        _check_fields(cls, d)
        d = dict(d)
        if isinstance(d.get("run"), dict):
            d["run"] = RunConfig.from_dict(d["run"])
        return cls(**d)


def _check_count_named(flag, value, field):
    if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        raise ValueError(
            f"{flag} must be positive (a whole number). Received: {field}={value!r}"
        )


def _check_has_dense_stack(model_name: str) -> None:
    """Refuses a model the registry does not declare with a dense hidden stack.

    The declaration (zoo/registry.py `register_model(dense_stack=...)`) saves
    building the model, and so importing TensorFlow, in a process that only
    plans runs (trainers/suite.py).
    """
    if not zoo.model_spec(model_name).dense_stack:
        raise ValueError(
            f"{zoo.pretraining.no_dense_stack(model_name)} Pretraining needs an MLP."
        )
