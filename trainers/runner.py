"""Building a run from its resolved config, and `run()`.

Flag-free: trainers/train.py turns flags (or --config) into a RunConfig, the
suite builds RunConfigs directly, and both call `run(config, output_dir)`,
so a run from Python gets exactly what the command line gets (the task's
recipe included: RunConfig.resolved() applies it).

    >>> from trainers import runner
    >>> cfg = runner.RunConfig(model="lstm", task="adding", num_steps=3000)
    >>> result = runner.run(cfg, "runs/lstm")

Tested by tests/trainers/test_runner.py.
"""

import dataclasses
import json
import os
import platform
import re
import time

import absl
import keras
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

import zoo
from analysis import schema
from trainers import loop, writer
from trainers.config import STRATEGIES, RunConfig, make_optimizer, upgrade_record

__all__ = ["BuiltRun", "RunConfig", "build_run", "run"]

# Examples (the first ones of the eval split) whose gradient through time is
# recorded at logging steps when asked for: the same batch every time, so the
# rows show the model changing, not the data.
PROBE_BATCH = 64


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
                f"op; make it first and pass it to build_run() ({e})"
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
    raise ValueError(f"Unknown strategy '{name}'. Known: {', '.join(STRATEGIES)}.")


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


def cpu_allocator() -> str:
    """The CPU allocator TensorFlow uses in this process: "bfc" or "default"
    (only the BFC allocator keeps statistics)."""
    try:
        tf.config.experimental.get_memory_info("CPU:0")
    except ValueError:
        return "default"
    return "bfc"


def loop_config(c: RunConfig) -> loop.LoopConfig:
    """The loop's part of a resolved RunConfig."""
    names = [f.name for f in dataclasses.fields(loop.LoopConfig)]
    return loop.LoopConfig(**{k: getattr(c, k) for k in names})


@dataclasses.dataclass
class BuiltRun:
    """A validated run, ready to train: its config, its objects, its directory.

    It owns `run_dir` (a live owner keeps other processes out) until
    `train()` returns or `release()` is called.
    """

    config: RunConfig
    run_dir: writer.RunDir
    model: keras.Model
    task: zoo.Task
    optimizer: keras.optimizers.Optimizer
    strategy: tf.distribute.Strategy
    resumed: bool

    @property
    def output_dir(self) -> str:
        return self.run_dir.path

    def train(self) -> loop.TrainResult:
        hooks = []
        if self.config.log_gradient_through_time:
            hooks.append(gradient_through_time_hook(self.model, self.task))
        try:
            return loop.train(
                self.model,
                self.optimizer,
                loop.Objective.of_task(self.task),
                self.task,
                loop_config(self.config),
                self.run_dir,
                strategy=self.strategy,
                hooks=hooks,
            )
        finally:
            self.release()

    def release(self) -> None:
        self.run_dir.release()


def build_run(
    config: RunConfig,
    output_dir: str,
    *,
    overwrite: bool = False,
    flags_text=None,
    strategy: tf.distribute.Strategy | None = None,
) -> BuiltRun:
    """Validates `config`, builds everything, and readies `output_dir`.

    Everything that can be refused is checked here, before a file is
    written: a live owner of `output_dir` first (before any TensorFlow
    work), then the config, the data and the directory. Then config.json
    (and flags.txt) are written for a new run. `strategy` is one already
    made by `make_strategy(config.strategy)`: multi_worker must be made
    before TensorFlow runs any op, so trainers/train.py makes it first.

    Raises:
      ValueError: a bad setting, task data that is missing (zoo.TaskDataError)
        or an output_dir that cannot be used (RunDirError); the message is
        one line that names the culprit.
    """
    c = config.resolved()
    run_dir = writer.claim(output_dir)
    try:
        built = _build(c, run_dir, overwrite, flags_text, strategy)
    except BaseException as e:
        if run_dir.opened and isinstance(e, KeyboardInterrupt):
            run_dir.mark_failed("interrupted before training started")
        run_dir.release()
        raise
    return built


def _build(c: RunConfig, run_dir, overwrite, flags_text, strategy) -> BuiltRun:
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
        try:
            model = zoo.get_model(
                c.model,
                input_shape=task.input_shape,
                num_outputs=task.num_outputs,
                output_per_step=task.output_per_step,
                **c.model_kwargs,
            )
        except (tf.errors.ResourceExhaustedError, MemoryError) as e:
            what = re.search(r"OOM when allocating tensor with shape\[[^\]]*\]", str(e))
            raise ValueError(
                f"model '{c.model}' with {c.model_kwargs} does not fit in memory"
                f" ({what.group(0) if what else type(e).__name__})"
            ) from None
        optimizer = make_optimizer(c)
    # Weights, gradients and up to two optimizer slots, in float32.
    zoo.tasks.base.check_memory(
        f"training model '{c.model}' ({model.count_params():,} parameters)",
        model.count_params() * 4 * 4,
    )
    record = run_record(
        c,
        task,
        model,
        replicas,
        # Every worker writes a whole run directory; the chief's is the run.
        worker=read_tf_config().to_dict() if c.strategy == "multi_worker" else None,
    )
    state = run_dir.open(record, overwrite=overwrite, upgrade=upgrade_record)
    if state == "new" and flags_text is not None:
        schema.write_text(run_dir.file(schema.FLAGS_FILE), flags_text)
    return BuiltRun(c, run_dir, model, task, optimizer, strategy, state == "resume")


def task_info(task) -> dict:
    """config.json's facts about the task."""
    return {
        "input_shape": list(task.input_shape),
        "num_outputs": task.num_outputs,
        "output_per_step": task.output_per_step,
        "num_train": len(task.x_train),
        "num_eval": len(task.x_eval),
        "main_metric": task.main_metric,
        "baselines": dict(task.baselines),
    }


def run_record(c: RunConfig, task, model, replicas: int, **facts) -> schema.RunRecord:
    """config.json of a run of `model` (depth axis from the zoo) on `task`.

    `facts` are the record's optional entries (worker, pretraining, phase,
    or depth_axis when the model is not a zoo model).
    """
    if "depth_axis" not in facts:
        facts["depth_axis"] = [list(e) for e in zoo.depth_axis(model, min_positions=1)]
    return schema.RunRecord(
        config=c.to_dict(),
        num_replicas=replicas,
        task_info=task_info(task),
        num_parameters=model.count_params(),
        versions=versions(),
        **facts,
    )


def run(config: RunConfig, output_dir: str, **kwargs) -> loop.TrainResult:
    """`build_run(config, output_dir, **kwargs).train()`."""
    return build_run(config, output_dir, **kwargs).train()


def gradient_through_time_hook(model, task) -> loop.LogHook:
    """A loop hook appending the probe batch's gradient through time."""
    from analysis import temporal  # imported only by runs that ask for it

    x, y = next(iter(task.eval_dataset(PROBE_BATCH)))

    def log(step, run_dir, tb):
        g = temporal.gradient_through_time(model, x, y, task.loss)
        row = schema.TemporalRow(
            step=step,
            wall_time=time.time(),
            layer=g.layer,
            input_ratio=float(g.input_ratio),
            state_ratio=float(g.state_ratio),
            decay_rate=float(g.decay_rate()),
            input_grad_norms=g.input_grad_norms.tolist(),
            state_grad_norms=g.state_grad_norms.tolist(),
        )
        run_dir.append(schema.TEMPORAL_FILE, row)
        with tb.as_default(step=step):
            for k in ("input_ratio", "state_ratio", "decay_rate"):
                tf.summary.scalar(f"gradient_through_time/{k}", getattr(row, k))
        logging.info(
            "step %d  gradient through time (%s): |dL/dx_1|/|dL/dx_T| %.3g, "
            "%.3g per step",
            step,
            g.layer,
            row.input_ratio,
            row.decay_rate,
        )

    return log
