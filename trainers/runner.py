"""A run's resolved configuration, the objects built from it, and `run()`.

Flag-free: trainers/train.py turns flags into a RunConfig, the suite builds
RunConfigs directly, and both call `run(config, output_dir)`.

    >>> from trainers import runner
    >>> cfg = runner.RunConfig(model="plain_mlp", model_kwargs={"depth": 5},
    ...                        task="digits", num_steps=200)
    >>> result = runner.run(cfg, "runs/example")

Tested by tests/trainers/test_runner.py.
"""

import dataclasses
import inspect
import json
import os
import platform

import absl
import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

import zoo
from trainers import loop, rundir

# name -> (Keras class, presets, hyper-parameters a user may set). Presets
# turn one Keras class into the textbook variants (momentum, Nesterov);
# everything else keeps Keras' own defaults, which the resolved config
# records explicitly (note Adadelta's Keras default learning rate is 0.001,
# not the paper's 1.0).
OPTIMIZERS = {
    "sgd": (keras.optimizers.SGD, {}, ()),
    "momentum": (keras.optimizers.SGD, {"momentum": 0.9}, ("momentum",)),
    "nesterov": (
        keras.optimizers.SGD,
        {"momentum": 0.9, "nesterov": True},
        ("momentum",),
    ),
    "adagrad": (
        keras.optimizers.Adagrad,
        {},
        ("initial_accumulator_value", "epsilon"),
    ),
    "rmsprop": (keras.optimizers.RMSprop, {}, ("rho", "momentum", "epsilon")),
    "adadelta": (keras.optimizers.Adadelta, {}, ("rho", "epsilon")),
    "adam": (keras.optimizers.Adam, {}, ("beta_1", "beta_2", "epsilon")),
    "nadam": (keras.optimizers.Nadam, {}, ("beta_1", "beta_2", "epsilon")),
    "adamw": (keras.optimizers.AdamW, {}, ("beta_1", "beta_2", "epsilon")),
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


@dataclasses.dataclass
class RunConfig:
    """Everything that decides what a run computes.

    `resolved()` fills every default explicitly (model and optimizer
    hyper-parameters from their signatures), so the saved config.json alone
    says what ran. Step counts are optimizer updates; each update sees
    `batch_size * grad_accum_steps` examples, in `grad_accum_steps`
    micro-batches of `batch_size`.
    """

    model: str = "plain_mlp"
    model_kwargs: dict = dataclasses.field(default_factory=dict)
    task: str = "digits"
    task_kwargs: dict = dataclasses.field(default_factory=dict)
    optimizer: str = "sgd"
    learning_rate: float | None = None  # None: the Keras default
    optimizer_kwargs: dict = dataclasses.field(default_factory=dict)
    lr_schedule: str = "constant"
    lr_decay_steps: int = 0  # "step" schedule: decay every N steps
    lr_decay_rate: float = 0.1
    clipping: str = "none"
    clip_threshold: float = 0.0
    batch_size: int = 128
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
    data_dir: str | None = None

    def resolved(self) -> "RunConfig":
        """A validated copy with every default made explicit.

        Raises:
          ValueError: one line naming the offending setting.
        """
        c = dataclasses.replace(self)
        spec = zoo.model_spec(c.model)
        task_spec = zoo.task_spec(c.task)
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
        c.task_kwargs = _resolve_task(task_spec, c.task_kwargs)
        c.optimizer_kwargs, c.learning_rate = _resolve_optimizer(
            c.optimizer, c.optimizer_kwargs, c.learning_rate
        )
        _check_choice("lr_schedule", c.lr_schedule, LR_SCHEDULES)
        _check_choice("clipping", c.clipping, CLIPPING)
        _check_choice("strategy", c.strategy, STRATEGIES)
        for name in LOOP_COUNTS:
            _check_positive(name, getattr(c, name))
        if c.clipping == "none":
            c.clip_threshold = 0.0
        else:
            _check_positive("clip_threshold", c.clip_threshold)
        if c.lr_schedule == "step":
            _check_positive("lr_decay_steps", c.lr_decay_steps)
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
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


def _resolve_task(spec, kwargs):
    """The task loader's arguments with its defaults made explicit."""
    params = inspect.signature(spec.loader).parameters
    defaults = {
        k: p.default
        for k, p in params.items()
        if k != "data_dir" and p.default is not inspect.Parameter.empty
    }
    unknown = sorted(set(kwargs) - set(defaults))
    if unknown:
        raise ValueError(
            f"Task '{spec.name}' takes no argument {', '.join(unknown)}. "
            f"It takes: {', '.join(sorted(defaults)) or 'no arguments'}."
        )
    return {**defaults, **kwargs}


def _check_choice(name, value, known):
    if value not in known:
        raise ValueError(f"Unknown {name} '{value}'. Known: {', '.join(known)}.")


def _check_positive(name, value):
    if not (isinstance(value, (int, float)) and 0 < value < _FLOAT32_MAX):
        raise ValueError(
            f"{name} must be positive and finite. Received: {name}={value}"
        )


def _resolve_optimizer(name, kwargs, learning_rate):
    """(explicit hyper-parameters, learning rate) for optimizer `name`."""
    if name not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer '{name}'. Known optimizers: {', '.join(OPTIMIZERS)}."
        )
    cls, presets, own = OPTIMIZERS[name]
    settable = own + _COMMON_HPARAMS
    unknown = sorted(set(kwargs) - set(settable))
    if unknown:
        raise ValueError(
            f"Optimizer '{name}' takes no {', '.join(unknown)} "
            f"(it takes: {', '.join(settable)})."
        )
    defaults = {
        k: p.default
        for k, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
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


def make_optimizer(c: RunConfig) -> keras.optimizers.Optimizer:
    """The Keras optimizer for a resolved config.

    Clipping is not handed to Keras: the train step clips the all-reduced
    gradient itself (see loop.py for why).
    """
    cls, presets, _ = OPTIMIZERS[c.optimizer]
    kwargs = {**presets, **c.optimizer_kwargs}
    if not kwargs["weight_decay"] and cls is not keras.optimizers.AdamW:
        # Keras' None skips the decay ops; 0.0 would still run them each step.
        del kwargs["weight_decay"]
    return cls(learning_rate=make_schedule(c), **kwargs)


def make_schedule(c: RunConfig):
    """The learning rate: a float, or a Keras schedule of the update count."""
    if c.lr_schedule == "cosine":  # to 0 at num_steps
        return keras.optimizers.schedules.CosineDecay(c.learning_rate, c.num_steps)
    if c.lr_schedule == "step":  # x lr_decay_rate every lr_decay_steps
        return keras.optimizers.schedules.ExponentialDecay(
            c.learning_rate, c.lr_decay_steps, c.lr_decay_rate, staircase=True
        )
    return c.learning_rate


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into logical devices (for mirrored runs on a CPU).

    Must run before TensorFlow executes any op.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices
    )


def make_strategy(name: str) -> tf.distribute.Strategy:
    """A tf.distribute strategy by name.

    - default: whatever device TensorFlow picks (one GPU if present).
    - one_device: the first GPU, else the CPU.
    - mirrored: data parallel over all GPUs, else over all logical CPUs
      (see `split_cpu`).
    - tpu: a TPU reached through TPUClusterResolver (untested here: no TPU).
    - multi_worker: one run over the machines $TF_CONFIG names (see
      `read_tf_config`); it must be built before TensorFlow runs any op,
      and building it waits until every worker has started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":  # before list_logical_devices, which starts TF
        read_tf_config()  # refuse a missing or malformed TF_CONFIG in one line
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:  # "Collective ops must be configured at ..."
            raise ValueError(
                "strategy multi_worker must be made before TensorFlow runs any "
                f"op; make it first and pass it to prepare() ({e})"
            ) from None
    gpus = tf.config.list_logical_devices("GPU")
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    if name == "mirrored":
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(
            cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()
        )
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    _check_choice("strategy", name, STRATEGIES)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a multi_worker cluster (from $TF_CONFIG).

    TensorFlow needs every worker to take part in each checkpoint save, so
    every worker writes a whole run directory to its own output_dir; the
    chief's is the run, the others' are copies of the same numbers.
    """

    task_type: str  # "worker" or "chief"
    task_index: int
    num_workers: int  # every member of the cluster, the chief included
    is_chief: bool  # its output_dir is the run; the others keep copies

    def to_dict(self) -> dict:
        return {"task": f"{self.task_type}:{self.task_index}", "chief": self.is_chief}


def read_tf_config(environ=None) -> WorkerRole:
    """This worker's role in the cluster that $TF_CONFIG describes.

    TF_CONFIG is what tf.distribute.cluster_resolver.TFConfigClusterResolver
    reads: `{"cluster": {"worker": ["host0:port", "host1:port"]}, "task":
    {"type": "worker", "index": 0}}`. The chief is "chief" 0 when the cluster
    has one, else worker 0 (TensorFlow's rule). Checked here because a
    malformed one would otherwise surface as a wait for peers that never come.

    Raises:
      ValueError: TF_CONFIG is unset or malformed; the message is one line.
    """
    text = (os.environ if environ is None else environ).get("TF_CONFIG", "")
    if not text.strip():
        raise ValueError(
            "strategy multi_worker needs the TF_CONFIG environment variable "
            "(the cluster and this worker's place in it; see BUILD.md)"
        )
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not JSON ({e})") from None
    if not isinstance(spec, dict):
        spec = {}
    cluster, task = spec.get("cluster"), spec.get("task")
    if not (isinstance(cluster, dict) and cluster and isinstance(task, dict)):
        raise ValueError(
            'TF_CONFIG needs a "cluster" and a "task" object. '
            f"Received: TF_CONFIG={' '.join(text.split())}"
        )
    unknown = sorted(set(cluster) - {"chief", "worker"})
    if unknown:
        raise ValueError(
            f"TF_CONFIG cluster may hold only chief and worker jobs, not "
            f"{', '.join(unknown)}"
        )
    for job, addresses in cluster.items():
        if not (
            isinstance(addresses, list)
            and addresses
            and all(
                isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses
            )
        ):
            raise ValueError(
                f'TF_CONFIG cluster "{job}" must be a list of "host:port" '
                f"addresses. Received: {json.dumps(addresses)}"
            )
    if len(cluster.get("chief", [])) > 1:
        raise ValueError("TF_CONFIG cluster may have one chief, not several")
    task_type, index = task.get("type"), task.get("index")
    if not (
        task_type in cluster
        and isinstance(index, int)
        and not isinstance(index, bool)
        and 0 <= index < len(cluster[task_type])
    ):
        members = ", ".join(f"{k} 0-{len(v) - 1}" for k, v in cluster.items())
        raise ValueError(
            f"TF_CONFIG task {json.dumps(task)} is not a member of its cluster "
            f"({members})"
        )
    chief_type = "chief" if "chief" in cluster else "worker"
    return WorkerRole(
        task_type=task_type,
        task_index=index,
        num_workers=sum(len(v) for v in cluster.values()),
        is_chief=task_type == chief_type and index == 0,
    )


def versions() -> dict:
    """The versions that decide what a run computes, for config.json."""
    return {
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflow_datasets": tfds.__version__,
        "numpy": np.__version__,
        "absl": absl.__version__,
    }


@dataclasses.dataclass
class Run:
    """A validated run, ready to train: its config and the objects built."""

    config: RunConfig
    output_dir: str
    model: keras.Model
    task: zoo.Task
    optimizer: keras.optimizers.Optimizer
    strategy: tf.distribute.Strategy

    def train(self) -> loop.TrainResult:
        c = self.config
        return loop.train(
            self.model,
            self.task,
            self.optimizer,
            output_dir=self.output_dir,
            num_steps=c.num_steps,
            batch_size=c.batch_size,
            grad_accum_steps=c.grad_accum_steps,
            clipping=c.clipping,
            clip_threshold=c.clip_threshold,
            seed=c.seed,
            log_every_steps=c.log_every_steps,
            eval_every_steps=c.eval_every_steps,
            checkpoint_every_steps=c.checkpoint_every_steps,
            early_stopping_patience=c.early_stopping_patience,
            early_stopping_min_delta=c.early_stopping_min_delta,
            strategy=self.strategy,
            jit_compile=c.jit_compile,
            log_gradient_through_time=c.log_gradient_through_time,
        )


def prepare(
    config: RunConfig,
    output_dir: str,
    *,
    overwrite: bool = False,
    flags_text=None,
    strategy: tf.distribute.Strategy | None = None,
) -> Run:
    """Validates `config`, builds everything, and readies `output_dir`.

    Everything that can be refused is checked here, before a file is written;
    then config.json (and flags.txt) are written for a new run. `strategy` is
    one already made by `make_strategy(config.strategy)`: multi_worker must
    be made before TensorFlow runs any op, so trainers/train.py makes it first.

    Raises:
      ValueError: a bad setting, task data that is missing (zoo.TaskDataError)
        or an output_dir that cannot be used (rundir.RunDirError); the
        message is one line that names the culprit.
    """
    c = config.resolved()
    task = zoo.load_task(c.task, data_dir=c.data_dir, **c.task_kwargs)
    step_batch = c.batch_size * c.grad_accum_steps
    if step_batch > len(task.x_train):
        raise ValueError(
            f"batch_size * grad_accum_steps = {step_batch} is more than task "
            f"'{c.task}' has training examples ({len(task.x_train)})"
        )
    if strategy is None:
        strategy = make_strategy(c.strategy)
    replicas = strategy.num_replicas_in_sync
    if c.batch_size % replicas:
        raise ValueError(
            f"batch_size {c.batch_size} does not split evenly over {replicas} replicas"
        )
    keras.utils.set_random_seed(c.seed)
    tf.config.experimental.enable_op_determinism()
    with strategy.scope():
        model = zoo.get_model(
            c.model,
            input_shape=task.input_shape,
            num_outputs=task.num_outputs,
            output_per_step=task.output_per_step,
            **c.model_kwargs,
        )
        optimizer = make_optimizer(c)
    record = {
        rundir.FORMAT_KEY: rundir.FORMAT,
        **c.to_dict(),
        "num_replicas": replicas,
        "task_info": {
            "input_shape": list(task.input_shape),
            "num_outputs": task.num_outputs,
            "output_per_step": task.output_per_step,
            "num_train": len(task.x_train),
            "num_eval": len(task.x_eval),
            "main_metric": task.main_metric,
            "baselines": dict(task.baselines),
        },
        "num_parameters": model.count_params(),
        "versions": versions(),
    }
    if c.strategy == "multi_worker":
        # Every worker writes a whole run directory; the chief's is the run.
        record["worker"] = read_tf_config().to_dict()
    state = rundir.prepare(
        output_dir, record, overwrite=overwrite, upgrade=_upgrade_record
    )
    if state == "new":
        rundir.write_json(os.path.join(output_dir, rundir.CONFIG_FILE), record)
        if flags_text is not None:
            rundir.write_text(os.path.join(output_dir, rundir.FLAGS_FILE), flags_text)
    return Run(c, output_dir, model, task, optimizer, strategy)


def _upgrade_record(old: dict) -> dict:
    """A config.json written by an earlier gradzoo, restated in today's terms.

    Settings added since then take their defaults, which is what those runs
    did (no gradient-through-time log, no per-step outputs, the task's
    default arguments), so such a run resumes instead of being refused.
    """
    old = dict(old)
    for f in dataclasses.fields(RunConfig):
        if f.name not in old:
            empty = f.default_factory if f.default is dataclasses.MISSING else None
            old[f.name] = empty() if empty else f.default
    try:
        spec = zoo.task_spec(old["task"])
        old["task_kwargs"] = _resolve_task(spec, old["task_kwargs"] or {})
    except (KeyError, TypeError, ValueError):
        pass  # not comparable: the comparison will name it
    if isinstance(old.get("task_info"), dict):
        old["task_info"] = {"output_per_step": False, **old["task_info"]}
    return old


def run(config: RunConfig, output_dir: str, **kwargs) -> loop.TrainResult:
    """`prepare(config, output_dir, **kwargs).train()`."""
    return prepare(config, output_dir, **kwargs).train()
