"""Generated long-range sequence tasks: `adding`, `copy_memory`, `temporal_order`.

Each task puts the information a model needs far from where it must use it,
so only a model that carries a signal across many steps beats the
input-independent baseline. The data are drawn by NumPy and built as TFDS
datasets (gradzoo_adding, gradzoo_copy_memory, gradzoo_temporal_order), one
builder config per (sequence_length, data_seed, num_train, num_eval), named
e.g. "length100_seed0_train20000_eval2000", so several lengths live side by
side in one data_dir and each is built once, offline. The builders are in
zoo/tasks/builders.py, imported when data is built or read.

Sequences are at most MAX_SEQUENCE_LENGTH = 1000 steps long. Each split is
drawn from `np.random.RandomState([data_seed, 1])` (train) or
`[data_seed, 2]` (test), whose streams are frozen across NumPy versions: the
same config gives byte-identical arrays in any data_dir. Symbols are stored
as uint8 and one-hot encoded when the task is loaded.

    python -c "import zoo; print(zoo.load_task('copy_memory', data_dir='/tmp/tfds'))"

Tested by tests/zoo/test_sequence_tasks.py.
"""

import dataclasses
import math
import numbers
import os
import shutil

import numpy as np

from zoo.tasks.base import (
    Task,
    check_memory,
    classification_task,
    register_task,
    regression_task,
    sequence_label_task,
)

MAX_SEQUENCE_LENGTH = 1000

# The command line's training settings for these tasks, each one applied
# unless the user sets it (after Arjovsky et al. 2016 and Le
# et al. 2015): Adam at 1e-3, batch 64, the global gradient norm clipped to 1
# (Pascanu et al. 2013), in place of the trainer's plain SGD at 0.01.
RECIPE = {
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "batch_size": 64,
    "clipping": "global_norm",
    "clip_threshold": 1.0,
}

# The stream each split is drawn from, after data_seed (0 is left unused).
SPLIT_STREAMS = {"train": 1, "test": 2}

# Copy memory: symbol 0 is the blank, 1..8 are data, 9 is the delimiter.
COPY_SYMBOLS = 10
COPY_DATA_SYMBOLS = 8
COPY_DELIMITER = 9
COPY_LENGTH = 10  # Symbols to remember, and steps to recall them in.

# Temporal order: the symbol ids, in one-hot order.
TEMPORAL_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "B", "E")
NUM_DISTRACTORS = 4  # a, b, c, d are ids 0..3.
SYMBOL_X, SYMBOL_B, SYMBOL_E = (TEMPORAL_SYMBOLS.index(s) for s in "XBE")  # Y: X + 1
TEMPORAL_CLASSES = ("XX", "XY", "YX", "YY")


def relevant_positions(length: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The inclusive ranges ((lo1, hi1), (lo2, hi2)) of temporal order's t1, t2.

    Nominally t1 in [round(T/10), round(T/5)] and t2 in [round(T/2),
    round(3T/5)], Python's round (ties to even): [10, 20] and [50, 60] at
    T = 100, as in Hochreiter & Schmidhuber (1997). Clamped so that
    1 <= t1 < t2 <= T - 2 at every length T >= 4, leaving B and E their ends:
    lo1 = max(1, round(T/10)), hi1 = max(lo1, round(T/5)),
    lo2 = max(hi1 + 1, round(T/2)), hi2 = min(T - 2, max(lo2, round(3T/5))).
    """
    # T / 10, not 0.1 * T: a tie such as 25 / 10 = 2.5 is then exact.
    lo1 = max(1, round(length / 10))
    hi1 = max(lo1, round(length / 5))
    lo2 = max(hi1 + 1, round(length / 2))
    hi2 = min(length - 2, max(lo2, round(3 * length / 5)))
    return (lo1, hi1), (lo2, hi2)


def _check_arguments(
    task: str,
    *,
    sequence_length,
    minimum: int,
    num_train,
    num_eval,
    data_seed,
    too_short: str | None = None,
) -> None:
    """One-line ValueErrors for arguments no dataset can be built from.

    `too_short`, if given, replaces the message for a sequence_length below
    `minimum`, for a task that can say why it needs that length.
    """

    def is_int(value):
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    for name, value in [
        ("sequence_length", sequence_length),
        ("num_train", num_train),
        ("num_eval", num_eval),
        ("data_seed", data_seed),
    ]:
        if not is_int(value):
            raise ValueError(
                f"{task}: {name} must be an integer. Received: {name}={value!r}"
            )
    if sequence_length < minimum and too_short:
        raise ValueError(too_short)
    if not minimum <= sequence_length <= MAX_SEQUENCE_LENGTH:
        raise ValueError(
            f"{task}: sequence_length must be between {minimum} and "
            f"{MAX_SEQUENCE_LENGTH}. Received: sequence_length={sequence_length}"
        )
    for name, value in [("num_train", num_train), ("num_eval", num_eval)]:
        if value < 1:
            raise ValueError(
                f"{task}: {name} must be at least 1. Received: {name}={value}"
            )
    # RandomState takes seeds in [0, 2**32).
    if not 0 <= data_seed < 2**32:
        raise ValueError(
            f"{task}: data_seed must be between 0 and 2**32 - 1. "
            f"Received: data_seed={data_seed}"
        )


def _load(
    builder_class,
    data_dir: str,
    task: str,
    *,
    minimum: int,
    too_short: str | None = None,
    **arguments,
) -> dict[str, dict]:
    """Checks the arguments, builds their config under data_dir if needed,
    and returns {split: arrays}. Nothing is written for refused arguments.
    `builder_class` is a TFDS builder of zoo/tasks/builders.py."""
    _check_arguments(task, minimum=minimum, too_short=too_short, **arguments)
    # Generation holds float64 temporaries, the TFDS records and the final
    # float32 arrays at once: about 4 float64 copies of the inputs.
    examples = arguments["num_train"] + arguments["num_eval"]
    check_memory(
        f"{task} with {examples} sequences of length {arguments['sequence_length']}",
        examples * arguments["sequence_length"] * 2 * 8 * 4,
    )
    import tensorflow_datasets as tfds

    from zoo.tasks.builders import sequence_config

    config = sequence_config(**{k: int(v) for k, v in arguments.items()})
    builder = builder_class(config=config, data_dir=data_dir)
    try:
        builder.download_and_prepare()
    except BaseException:
        # Never leave a half-built dataset behind: TFDS builds in a
        # temporary folder next to the final one.
        _remove_incomplete(builder)
        raise
    return {
        split: tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
        for split in SPLIT_STREAMS
    }


def _remove_incomplete(builder) -> None:
    parent = os.path.dirname(str(builder.data_dir))
    if os.path.isdir(parent):
        for name in os.listdir(parent):
            if "incomplete" in name:
                shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


@register_task(
    "adding",
    input_kind="sequence",
    tiny=dict(sequence_length=8, num_train=256, num_eval=64),
    recipe=RECIPE,
)
def adding_task(
    *,
    data_dir: str,
    sequence_length: int = 100,
    num_train: int = 20000,
    num_eval: int = 2000,
    data_seed: int = 0,
) -> Task:
    """The adding problem: sum the two marked values of a sequence.

    Hochreiter & Schmidhuber (1997); here the version of Le et al. (2015) and
    Arjovsky et al. (2016): inputs x float32 [T, 2], channel 0 values uniform
    in [0, 1), channel 1 markers, 1.0 at two positions, one in each half of
    the sequence; target y float32 [1], the sum of the two marked values.
    A RegressionTask (mse). The best constant prediction, 1, scores the
    variance of the sum of two uniforms, 1/6 = 0.1667 (0.1767, a figure that
    circulates in the literature, is a slip); the baseline here is measured:
    the training mean of y, scored on the evaluation set.

    Args:
      data_dir: Where the TFDS dataset gradzoo_adding is built.
      sequence_length: T, between 2 and MAX_SEQUENCE_LENGTH (1000).
      num_train: Training examples.
      num_eval: Evaluation examples.
      data_seed: Seeds the data; the same arguments give byte-identical arrays.
    """
    from zoo.tasks import builders  # TFDS: only when data is built or read

    data = _load(
        builders.GradzooAdding,
        data_dir,
        "adding",
        minimum=2,
        sequence_length=sequence_length,
        data_seed=data_seed,
        num_train=num_train,
        num_eval=num_eval,
    )
    x = {
        split: np.stack([d["values"], d["markers"].astype(np.float32)], axis=-1)
        for split, d in data.items()
    }
    task = regression_task(
        "adding",
        input_kind="sequence",
        x_train=x["train"],
        y_train=data["train"]["target"],
        x_eval=x["test"],
        y_eval=data["test"]["target"],
        description="",
    )
    description = (
        f"Adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): "
        f"T={sequence_length} values in [0, 1), two marked, one in each half; "
        f"predict their sum. Constant-prediction mse: 1/6 = 0.1667 analytic, "
        f"{task.baselines['mse']:.4f} measured (data_seed={data_seed})."
    )
    return dataclasses.replace(task, description=description)


@register_task(
    "copy_memory",
    input_kind="sequence",
    tiny=dict(sequence_length=22, num_train=256, num_eval=64),
    recipe=RECIPE,
)
def copy_memory_task(
    *,
    data_dir: str,
    sequence_length: int = 50,
    num_train: int = 10000,
    num_eval: int = 1000,
    data_seed: int = 0,
) -> Task:
    """The copy memory problem: recall 10 symbols after a delay T.

    Arjovsky, Shah & Bengio (2016). sequence_length is the model's input
    length L = T + 20: 10 data symbols (1..8), T - 1 blanks (0), the
    delimiter (9), 10 blanks; inputs one-hot float32 [L, 10]. The target,
    int32 [L], is blank for the first L - 10 steps and then the 10 data
    symbols, so the model predicts at every step over 9 classes (blank and
    the 8 data symbols): a SequenceLabelTask scoring "recall_accuracy" on the
    last 10 steps. A memoryless model, predicting each step's label
    frequencies, has loss 10 ln 8 / L and recall accuracy 1/8; the baselines
    here are that predictor, fitted on the training set and scored on the
    evaluation set.

    Args:
      data_dir: Where the TFDS dataset gradzoo_copy_memory is built.
      sequence_length: L = T + 20, between 21 and MAX_SEQUENCE_LENGTH (1000).
      num_train: Training examples.
      num_eval: Evaluation examples.
      data_seed: Seeds the data; the same arguments give byte-identical arrays.
    """
    minimum = 2 * COPY_LENGTH + 1
    from zoo.tasks import builders  # TFDS: only when data is built or read

    data = _load(
        builders.GradzooCopyMemory,
        data_dir,
        "copy_memory",
        minimum=minimum,
        too_short=(
            f"copy_memory: sequence_length={sequence_length} leaves no room for "
            f"the copy delay: it must be >= {minimum} (10 symbols, a delay "
            f"T >= 1, 10 recall steps; T = sequence_length - 20)"
        ),
        sequence_length=sequence_length,
        data_seed=data_seed,
        num_train=num_train,
        num_eval=num_eval,
    )
    one_hot = np.eye(COPY_SYMBOLS, dtype=np.float32)
    task = sequence_label_task(
        "copy_memory",
        input_kind="sequence",
        x_train=one_hot[data["train"]["inputs"]],
        y_train=data["train"]["targets"],
        x_eval=one_hot[data["test"]["inputs"]],
        y_eval=data["test"]["targets"],
        num_classes=COPY_DATA_SYMBOLS + 1,
        scored_steps=COPY_LENGTH,
        description="",
    )
    delay = sequence_length - 2 * COPY_LENGTH
    analytic_loss = COPY_LENGTH * math.log(COPY_DATA_SYMBOLS) / sequence_length
    description = (
        f"Copy memory (Arjovsky, Shah & Bengio 2016): recall 10 symbols of 8 "
        f"after a delay T={delay}, input length L={sequence_length}. "
        f"Memoryless baseline: loss 10 ln 8 / L = {analytic_loss:.4f} analytic, "
        f"{task.baselines['loss']:.4f} measured; recall accuracy 1/8 analytic, "
        f"{task.baselines['recall_accuracy']:.4f} measured (data_seed={data_seed})."
    )
    return dataclasses.replace(task, description=description)


@register_task(
    "temporal_order",
    input_kind="sequence",
    tiny=dict(sequence_length=8, num_train=256, num_eval=64),
    recipe=RECIPE,
)
def temporal_order_task(
    *,
    data_dir: str,
    sequence_length: int = 100,
    num_train: int = 10000,
    num_eval: int = 1000,
    data_seed: int = 0,
) -> Task:
    """The temporal order problem: classify the order of two distant symbols.

    Hochreiter & Schmidhuber (1997), experiment 6a, at a fixed length T:
    B at step 0, E at step T - 1, X or Y at t1 ~ T/10..T/5 and at
    t2 ~ T/2..3T/5 (exactly: `relevant_positions`), random distractors
    a, b, c, d elsewhere; inputs one-hot float32 [T, 8]. The class is the
    order of the relevant symbols, XX, XY, YX or YY. Ignoring the input
    scores loss ln 4 = 1.386 and accuracy 1/4; the baselines here are
    measured by `classification_baselines`.

    Args:
      data_dir: Where the TFDS dataset gradzoo_temporal_order is built.
      sequence_length: T, between 4 and MAX_SEQUENCE_LENGTH (1000).
      num_train: Training examples.
      num_eval: Evaluation examples.
      data_seed: Seeds the data; the same arguments give byte-identical arrays.
    """
    from zoo.tasks import builders  # TFDS: only when data is built or read

    data = _load(
        builders.GradzooTemporalOrder,
        data_dir,
        "temporal_order",
        minimum=4,
        sequence_length=sequence_length,
        data_seed=data_seed,
        num_train=num_train,
        num_eval=num_eval,
    )
    one_hot = np.eye(len(TEMPORAL_SYMBOLS), dtype=np.float32)
    task = classification_task(
        "temporal_order",
        input_kind="sequence",
        x_train=one_hot[data["train"]["sequence"]],
        y_train=data["train"]["label"],
        x_eval=one_hot[data["test"]["sequence"]],
        y_eval=data["test"]["label"],
        num_classes=len(TEMPORAL_CLASSES),
        description="",
    )
    (lo1, hi1), (lo2, hi2) = relevant_positions(sequence_length)
    description = (
        f"Temporal order (Hochreiter & Schmidhuber 1997, 6a): T={sequence_length}, "
        f"classify the order (XX, XY, YX, YY) of X/Y at t1 in [{lo1}, {hi1}] and "
        f"t2 in [{lo2}, {hi2}] among distractors. Input-blind baseline: loss "
        f"ln 4 = 1.3863 and accuracy 0.25 analytic, {task.baselines['loss']:.4f} "
        f"and {task.baselines['accuracy']:.4f} measured (data_seed={data_seed})."
    )
    return dataclasses.replace(task, description=description)
