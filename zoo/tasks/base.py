"""The Task contract and the one task registry.

A task is in-memory NumPy data plus the loss, metrics and `tf.data` pipelines
a trainer needs. Its training batches are a pure function of (seed, step), so
a checkpoint that stores only the step resumes bit for bit.

`Task` classifies whole examples; `RegressionTask` predicts real targets and
`SequenceLabelTask` classifies every time step of a sequence. Each has a
constructor that computes its input-independent baselines from the data:
`classification_task`, `regression_task` and `sequence_label_task`.

    >>> import zoo
    >>> task = zoo.load_task("teacher", num_train=1024)
    >>> x, y = next(iter(task.train_dataset(128, seed=0, start_step=7)))

TensorFlow is imported inside the methods that build tensors and pipelines,
so the registry, the task specs and their arguments (read for flags and
config checks) need no TensorFlow.

Tested by tests/zoo/test_tasks.py.
"""

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from zoo import signature
from zoo.registry import lookup

if TYPE_CHECKING:
    import tensorflow as tf

INPUT_KINDS = ("vector", "image", "sequence")


class TaskDataError(ValueError):
    """A task's data is missing or unusable; the message says how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A classification task held in memory, with its loss and input pipelines."""

    name: str
    input_kind: str
    input_shape: tuple[int, ...]
    num_outputs: int
    x_train: np.ndarray = dataclasses.field(repr=False)
    y_train: np.ndarray = dataclasses.field(repr=False)
    x_eval: np.ndarray = dataclasses.field(repr=False)
    y_eval: np.ndarray = dataclasses.field(repr=False)
    main_metric: str
    higher_is_better: bool
    baselines: Mapping[str, float]
    description: str
    # True when the model must predict at every time step (logits
    # [batch, T, classes]) rather than once per example; the trainer passes it
    # on to the model builder.
    output_per_step: bool = False
    # "crop_flip": the standard CIFAR augmentation of each training batch
    # (pad 4 with zeros, random crop back to size, random horizontal flip),
    # drawn from (seed, step) by stateless ops; "none" leaves images alone.
    augmentation: str = "none"

    def loss(self, y_true, logits) -> "tf.Tensor":
        """Per-example softmax cross-entropy from logits, shape [batch]."""
        import tensorflow as tf

        # float32 so that a mixed-precision model still gets a stable loss.
        return tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y_true, tf.int32), logits=tf.cast(logits, tf.float32)
        )

    def metrics(self, y_true, logits) -> "dict[str, tf.Tensor]":
        """Per-example metric values, each float32 of shape [batch]."""
        import tensorflow as tf

        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        correct = tf.equal(predicted, tf.cast(y_true, tf.int32))
        return {"accuracy": tf.cast(correct, tf.float32)}

    def train_dataset(
        self, batch_size: int, *, seed: int, start_step: int = 0
    ) -> "tf.data.Dataset":
        """Endless `(x, y)` batches; element i is the batch for step start_step + i.

        Each epoch is a fresh permutation of the training set drawn from
        (seed, epoch) by a stateless op, and the last partial batch of an epoch
        is dropped, so every example is seen exactly once per epoch. Rows of x
        and y are gathered together, whatever y's shape: [N] labels, [N, T]
        per-step labels or [N, outputs] regression targets.

        Args:
          batch_size: Examples per batch; at most the number of training examples.
          seed: Seeds the per-epoch permutations.
          start_step: Global step of the first batch, to resume a run.

        Raises:
          ValueError: If batch_size is larger than the training set.
        """
        import tensorflow as tf

        n = len(self.x_train)
        if not 0 < batch_size <= n:
            raise ValueError(
                f"Task '{self.name}' has {n} training examples, too few for "
                f"batch_size={batch_size}."
            )
        steps_per_epoch = n // batch_size
        x, y = tf.constant(self.x_train), tf.constant(self.y_train)
        seed = tf.constant(seed, tf.int64)

        def epoch_rows(epoch):
            # One permutation per epoch, drawn from (seed, epoch) alone, so
            # any step's batch can be found again without iterator state.
            order = tf.random.experimental.stateless_shuffle(
                tf.range(n), seed=tf.stack([seed, epoch])
            )
            rows = order[: steps_per_epoch * batch_size]
            return tf.data.Dataset.from_tensor_slices(
                tf.reshape(rows, [steps_per_epoch, batch_size])
            )

        first_epoch, offset = divmod(start_step, steps_per_epoch)
        rows = tf.data.Dataset.counter(start=first_epoch, dtype=tf.int64)
        rows = rows.flat_map(epoch_rows).skip(offset)
        if self.augmentation == "none":
            batches = rows.map(
                lambda r: (tf.gather(x, r), tf.gather(y, r)),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        else:
            # The step's own seed: the same batch whatever step a run resumed at.
            batches = rows.enumerate(start=start_step).map(
                lambda step, r: (
                    crop_flip(tf.gather(x, r), tf.stack([seed, step])),
                    tf.gather(y, r),
                ),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        return batches.prefetch(tf.data.AUTOTUNE)

    def eval_dataset(self, batch_size: int) -> "tf.data.Dataset":
        """The evaluation set once, in a fixed order, last partial batch kept."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((self.x_eval, self.y_eval))
        return ds.batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)


AUGMENTATIONS = ("none", "crop_flip")
CROP_PAD = 4  # pixels of zero padding on each side before the random crop


def crop_flip(images: "tf.Tensor", seed: "tf.Tensor") -> "tf.Tensor":
    """The CIFAR augmentation of He et al. 2016 on a batch [B, H, W, C].

    Each image is zero-padded by 4 pixels on each side, cropped back to
    H x W at a random offset, and flipped left-right with probability 1/2;
    offsets and flips come from `seed` (two int64s) by stateless ops.
    """
    import tensorflow as tf

    shape = tf.shape(images)
    b, h, w = shape[0], shape[1], shape[2]
    pad = CROP_PAD
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    offset_seed, flip_seed = (
        tf.random.experimental.stateless_fold_in(seed, i) for i in (1, 2)
    )
    offsets = tf.random.stateless_uniform(
        [b, 2], offset_seed, minval=0, maxval=2 * pad + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(h)[None]
    cols = offsets[:, 1:] + tf.range(w)[None]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    cropped = tf.gather(cropped, cols, axis=2, batch_dims=1)
    flip = tf.random.stateless_uniform([b], flip_seed) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(cropped, [2]), cropped)


@dataclasses.dataclass(frozen=True, eq=False)
class RegressionTask(Task):
    """A task with real targets y, float32 [N, num_outputs], scored by squared error.

    The model's outputs are the predictions themselves (no softmax). The main
    metric is fixed by the type: "mse", lower is better.
    """

    main_metric: str = dataclasses.field(default="mse", init=False)
    higher_is_better: bool = dataclasses.field(default=False, init=False)

    def loss(self, y_true, outputs) -> "tf.Tensor":
        """Per-example squared error averaged over the output axis, shape [batch]."""
        import tensorflow as tf

        error = tf.cast(outputs, tf.float32) - tf.cast(y_true, tf.float32)
        return tf.reduce_mean(tf.square(error), axis=-1)

    def metrics(self, y_true, outputs) -> "dict[str, tf.Tensor]":
        """{"mse": the loss}, so evaluation reports it under its own name."""
        return {"mse": self.loss(y_true, outputs)}


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class SequenceLabelTask(Task):
    """A label at every time step: y int32 [N, T], logits [batch, T, classes].

    The loss averages cross-entropy over all T steps; "recall_accuracy" scores
    only the last `scored_steps` steps, where the answer is (for copy memory,
    the 10 recalled symbols; every earlier step is a trivially predictable
    blank). The main metric is the loss, lower is better: accuracy on the
    recall steps stays at chance for a long while before it moves.
    """

    scored_steps: int
    main_metric: str = dataclasses.field(default="loss", init=False)
    higher_is_better: bool = dataclasses.field(default=False, init=False)
    output_per_step: bool = dataclasses.field(default=True, init=False)

    def __post_init__(self):
        steps = self.y_train.shape[1]
        if not 1 <= self.scored_steps <= steps:
            raise ValueError(
                f"{self.name}: scored_steps must be between 1 and {steps}. "
                f"Received: scored_steps={self.scored_steps}"
            )

    def loss(self, y_true, logits) -> "tf.Tensor":
        """Per-example softmax cross-entropy averaged over steps, shape [batch]."""
        import tensorflow as tf

        return tf.reduce_mean(super().loss(y_true, logits), axis=-1)

    def metrics(self, y_true, logits) -> "dict[str, tf.Tensor]":
        """Per-example accuracy over the last `scored_steps` steps, shape [batch]."""
        import tensorflow as tf

        last = -self.scored_steps
        correct = super().metrics(y_true[:, last:], logits[:, last:])["accuracy"]
        return {"recall_accuracy": tf.reduce_mean(correct, axis=-1)}


def classification_baselines(
    y_train: np.ndarray, y_eval: np.ndarray, num_classes: int
) -> dict[str, float]:
    """What a model that ignores its input scores on the evaluation set.

    "accuracy" always predicts the most frequent training class (the lowest id
    on a tie); "loss" predicts the training class frequencies, the best
    input-independent predictor. The loss is infinite if an evaluation label
    never occurs in training.
    """
    freq = np.bincount(y_train, minlength=num_classes) / len(y_train)
    with np.errstate(divide="ignore"):
        loss = -np.mean(np.log(freq[y_eval]))
    accuracy = np.mean(y_eval == np.argmax(freq))
    return {"accuracy": float(accuracy), "loss": float(loss)}


def regression_baselines(y_train: np.ndarray, y_eval: np.ndarray) -> dict[str, float]:
    """The evaluation mse (= loss) of the best constant: the training mean of y."""
    mean = np.mean(y_train, axis=0, dtype=np.float64)
    mse = np.mean((y_eval - mean) ** 2)
    return {"mse": float(mse), "loss": float(mse)}


def sequence_label_baselines(
    y_train: np.ndarray, y_eval: np.ndarray, num_classes: int, scored_steps: int
) -> dict[str, float]:
    """What a memoryless model, one that sees only the step index, scores.

    At each step it predicts the training label frequencies of that step:
    `classification_baselines` per step, averaged over all steps for "loss"
    and over the last `scored_steps` steps for "recall_accuracy".
    """
    per_step = [
        classification_baselines(y_train[:, t], y_eval[:, t], num_classes)
        for t in range(y_train.shape[1])
    ]
    loss = np.mean([b["loss"] for b in per_step])
    accuracy = np.mean([b["accuracy"] for b in per_step[-scored_steps:]])
    return {"loss": float(loss), "recall_accuracy": float(accuracy)}


def _check_not_empty(name: str, x_train: np.ndarray, x_eval: np.ndarray) -> None:
    if len(x_train) == 0 or len(x_eval) == 0:
        raise TaskDataError(f"{name}: the training or evaluation split is empty.")


def classification_task(
    name: str,
    *,
    input_kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    num_classes: int,
    description: str,
) -> Task:
    """A Task with float32 inputs, int32 labels and baselines from the data."""
    _check_not_empty(name, x_train, x_eval)
    y_train, y_eval = y_train.astype(np.int32), y_eval.astype(np.int32)
    return Task(
        name=name,
        input_kind=input_kind,
        input_shape=tuple(x_train.shape[1:]),
        num_outputs=num_classes,
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_eval=x_eval.astype(np.float32),
        y_eval=y_eval,
        main_metric="accuracy",
        higher_is_better=True,
        baselines=classification_baselines(y_train, y_eval, num_classes),
        description=description,
    )


def regression_task(
    name: str,
    *,
    input_kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    description: str,
) -> RegressionTask:
    """A RegressionTask with float32 arrays; y is [N, num_outputs]."""
    _check_not_empty(name, x_train, x_eval)
    y_train, y_eval = y_train.astype(np.float32), y_eval.astype(np.float32)
    return RegressionTask(
        name=name,
        input_kind=input_kind,
        input_shape=tuple(x_train.shape[1:]),
        num_outputs=y_train.shape[1],
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_eval=x_eval.astype(np.float32),
        y_eval=y_eval,
        baselines=regression_baselines(y_train, y_eval),
        description=description,
    )


def sequence_label_task(
    name: str,
    *,
    input_kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_eval: np.ndarray,
    y_eval: np.ndarray,
    num_classes: int,
    scored_steps: int,
    description: str,
) -> SequenceLabelTask:
    """A SequenceLabelTask with float32 inputs and int32 labels y [N, T]."""
    _check_not_empty(name, x_train, x_eval)
    y_train, y_eval = y_train.astype(np.int32), y_eval.astype(np.int32)
    return SequenceLabelTask(
        name=name,
        input_kind=input_kind,
        input_shape=tuple(x_train.shape[1:]),
        num_outputs=num_classes,
        x_train=x_train.astype(np.float32),
        y_train=y_train,
        x_eval=x_eval.astype(np.float32),
        y_eval=y_eval,
        baselines=sequence_label_baselines(y_train, y_eval, num_classes, scored_steps),
        description=description,
        scored_steps=scored_steps,
    )


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A registered task: its loader, input kind and test-sized arguments.

    `recipe` holds the training settings a run of this task uses for those
    it leaves unset (the settings of the paper the task comes from), e.g.
    {"optimizer": "adam", "learning_rate": 1e-3, "clipping": "global_norm",
    "clip_threshold": 1.0}; keys are RunConfig fields, and
    RunConfig.resolved() applies it. The resolved values are what
    config.json records.
    """

    name: str
    loader: Callable[..., Task]
    input_kind: str
    tiny: dict
    recipe: dict = dataclasses.field(default_factory=dict)

    def arguments(self) -> dict[str, signature.Argument]:
        """The loader's own arguments (all but data_dir), typed, with help."""
        return signature.arguments(self.loader, exclude=("data_dir",))

    def resolve(self, **kwargs) -> dict[str, object]:
        """Defaults overridden by `kwargs`, checked; a bad one is a ValueError."""
        return signature.resolve(
            f"Task '{self.name}'",
            self.loader,
            kwargs,
            exclude=("data_dir",),
            prefix=f"{self.name}: ",
        )


_TASKS: dict[str, TaskSpec] = {}


def register_task(
    name: str,
    *,
    input_kind: str,
    tiny: Mapping | None = None,
    recipe: Mapping | None = None,
):
    """Decorator adding a loader `fn(*, data_dir, **kwargs) -> Task` as `name`."""
    if input_kind not in INPUT_KINDS:
        raise ValueError(
            f"input_kind must be one of {', '.join(INPUT_KINDS)}. "
            f"Received: input_kind={input_kind!r}"
        )

    def decorate(loader):
        if name in _TASKS:
            raise ValueError(f"Task '{name}' is registered twice.")
        _TASKS[name] = TaskSpec(
            name, loader, input_kind, dict(tiny or {}), dict(recipe or {})
        )
        return loader

    return decorate


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_TASKS)


def task_spec(name: str) -> TaskSpec:
    """The registry entry for `name`; an unknown name lists the known ones."""
    return lookup(_TASKS, "task", name)


def available_memory() -> int | None:
    """Bytes of memory this process can still use (Linux MemAvailable, or
    the cgroup limit if lower), or None where it cannot be read."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        return None
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            available = min(available or int(limit), int(limit))
    except OSError:
        pass
    return available


def check_memory(what: str, needed: int) -> None:
    """Refuses, in one line, to build something that cannot fit in memory.

    Raises:
      TaskDataError: `needed` bytes are more than this machine has free.
    """
    available = available_memory()
    if available is not None and needed > available:
        raise TaskDataError(
            f"{what} needs about {needed / 2**30:.1f} GiB of memory; this "
            f"machine has {available / 2**30:.1f} GiB free"
        )


def default_data_dir() -> str:
    """$GRADZOO_DATA_DIR, else tfds's default (~/tensorflow_datasets)."""
    if os.environ.get("GRADZOO_DATA_DIR"):
        return os.environ["GRADZOO_DATA_DIR"]
    import tensorflow_datasets as tfds

    return tfds.core.constants.DATA_DIR


def load_task(name: str, *, data_dir: str | None = None, **kwargs) -> Task:
    """Loads the registered task `name`.

    Args:
      name: A name from `list_tasks()`.
      data_dir: Where TFDS data lives; None means `default_data_dir()`.
      **kwargs: The task's own arguments (see its loader), e.g. data_seed.

    Raises:
      ValueError: For an unknown name or argument.
      TaskDataError: If the data is missing or unusable.
    """
    kwargs = task_spec(name).resolve(**kwargs)
    data_dir = os.path.expanduser(data_dir or default_data_dir())
    try:
        return task_spec(name).loader(data_dir=data_dir, **kwargs)
    except OSError as e:  # e.g. data_dir is a file, or not writable for a build
        raise TaskDataError(
            f"{name}: cannot use data_dir {data_dir} ({e.strerror or e})"
        ) from None
