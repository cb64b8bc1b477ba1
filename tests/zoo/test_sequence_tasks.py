"""Tests for the generated sequence tasks and the regression / per-step contracts.

.venv/bin/python -m pytest tests/zoo/test_sequence_tasks.py -q
"""

import math
import os

import numpy as np
import pytest
import tensorflow as tf

from zoo.tasks import RegressionTask, SequenceLabelTask, load_task, task_spec
from zoo.tasks.base import regression_task, sequence_label_task
from zoo.tasks.sequence import (
    COPY_DELIMITER,
    MAX_SEQUENCE_LENGTH,
    TEMPORAL_SYMBOLS,
    relevant_positions,
)

NAMES = ["adding", "copy_memory", "temporal_order"]


def tiny(name, data_dir, **kwargs):
    return load_task(name, data_dir=data_dir, **{**task_spec(name).tiny, **kwargs})


def symbols(x):
    """One-hot inputs back to symbol ids, checking they are one-hot."""
    np.testing.assert_array_equal(x.sum(-1), 1)
    return x.argmax(-1)


# The data.


def test_adding_has_two_markers_one_per_half_and_sums_them(data_dir):
    task = tiny("adding", data_dir, sequence_length=9)  # Odd: halves 4 and 5.
    assert task.input_shape == (9, 2) and task.num_outputs == 1
    for x, y in [(task.x_train, task.y_train), (task.x_eval, task.y_eval)]:
        assert x.dtype == np.float32 and y.dtype == np.float32
        assert y.shape == (len(x), 1)
        values, markers = x[..., 0], x[..., 1]
        assert 0 <= values.min() and values.max() < 1
        assert set(np.unique(markers)) == {0.0, 1.0}
        np.testing.assert_array_equal(markers[:, :4].sum(1), 1)
        np.testing.assert_array_equal(markers[:, 4:].sum(1), 1)
        np.testing.assert_allclose(y[:, 0], (values * markers).sum(1), rtol=1e-6)


def test_copy_memory_layout_and_targets(data_dir):
    task = tiny("copy_memory", data_dir)
    length = 22  # A copy delay of 2.
    assert task.input_shape == (length, 10) and task.num_outputs == 9
    assert task.output_per_step and task.scored_steps == 10
    inputs = symbols(task.x_train)
    data = inputs[:, :10]
    assert data.min() == 1 and data.max() == 8
    np.testing.assert_array_equal(inputs[:, 10 : length - 11], 0)  # T - 1 blanks.
    np.testing.assert_array_equal(inputs[:, length - 11], COPY_DELIMITER)
    np.testing.assert_array_equal(inputs[:, length - 10 :], 0)
    assert task.y_train.dtype == np.int32 and task.y_train.shape == (256, length)
    np.testing.assert_array_equal(task.y_train[:, : length - 10], 0)
    np.testing.assert_array_equal(task.y_train[:, length - 10 :], data)


def test_temporal_order_label_is_the_order_of_x_and_y(data_dir):
    task = tiny("temporal_order", data_dir)
    assert task.input_shape == (8, 8) and task.num_outputs == 4
    assert not task.output_per_step
    sequence = symbols(task.x_train)
    names = np.array(TEMPORAL_SYMBOLS)[sequence]
    assert (names[:, 0] == "B").all() and (names[:, -1] == "E").all()
    relevant = np.isin(names, ["X", "Y"])
    np.testing.assert_array_equal(relevant.sum(1), 2)
    assert np.isin(names[:, 1:-1][~relevant[:, 1:-1]], list("abcd")).all()
    (lo1, hi1), (lo2, hi2) = relevant_positions(8)
    for row, label in zip(names, task.y_train, strict=True):
        t1, t2 = np.flatnonzero(np.isin(row, ["X", "Y"]))
        assert lo1 <= t1 <= hi1 and lo2 <= t2 <= hi2
        assert ["XX", "XY", "YX", "YY"][label] == row[t1] + row[t2]


def test_relevant_positions_follow_the_paper_and_fit_every_length():
    assert relevant_positions(100) == ((10, 20), (50, 60))
    assert relevant_positions(4) == ((1, 1), (2, 2))
    for length in range(4, MAX_SEQUENCE_LENGTH + 1):
        (lo1, hi1), (lo2, hi2) = relevant_positions(length)
        assert 1 <= lo1 <= hi1 < lo2 <= hi2 <= length - 2, length


# Baselines, measured on a few thousand examples, against the formulas.


def test_adding_baseline_is_the_variance_of_the_sum(data_dir):
    task = tiny("adding", data_dir, num_train=2000, num_eval=4000)
    assert task.baselines["mse"] == task.baselines["loss"]
    assert task.baselines["mse"] == pytest.approx(1 / 6, abs=0.01)


def test_copy_memory_memoryless_baseline(data_dir):
    task = tiny("copy_memory", data_dir, num_train=2000, num_eval=1000)
    # Zero loss on the 12 predictable blanks, ln 8 on each recall step.
    assert task.baselines["loss"] == pytest.approx(10 * math.log(8) / 22, rel=0.01)
    assert task.baselines["recall_accuracy"] == pytest.approx(1 / 8, abs=0.02)
    # It is the loss of constant per-step frequency logits.
    frequency = np.stack(
        [np.bincount(step, minlength=9) / 2000 for step in task.y_train.T]
    )
    with np.errstate(divide="ignore"):
        logits = np.broadcast_to(np.log(frequency), (1000, 22, 9))
    loss = np.mean(task.loss(task.y_eval, logits))
    assert loss == pytest.approx(task.baselines["loss"], rel=1e-5)


def test_temporal_order_baseline_is_chance(data_dir):
    task = tiny("temporal_order", data_dir, num_train=2000, num_eval=2000)
    assert task.baselines["loss"] == pytest.approx(math.log(4), abs=0.01)
    assert task.baselines["accuracy"] == pytest.approx(0.25, abs=0.03)


# The TFDS builds.


@pytest.mark.parametrize("name", NAMES)
def test_same_config_rebuilds_byte_identical_data(name, tmp_path):
    first = tiny(name, str(tmp_path / "a"))
    again = tiny(name, str(tmp_path / "b"))
    other = tiny(name, str(tmp_path / "a"), data_seed=1)
    for field in ("x_train", "y_train", "x_eval", "y_eval"):
        assert getattr(first, field).tobytes() == getattr(again, field).tobytes()
        assert getattr(first, field).tobytes() != getattr(other, field).tobytes()


def test_two_lengths_live_side_by_side(tmp_path):
    short = tiny("adding", str(tmp_path))
    long = tiny("adding", str(tmp_path), sequence_length=12)
    configs = sorted(os.listdir(tmp_path / "gradzoo_adding"))
    assert configs == [
        "length12_seed0_train256_eval64",
        "length8_seed0_train256_eval64",
    ]
    # Loaded again, from disk, each is still its own.
    assert tiny("adding", str(tmp_path)).input_shape == short.input_shape == (8, 2)
    np.testing.assert_array_equal(
        tiny("adding", str(tmp_path), sequence_length=12).x_train, long.x_train
    )


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        (
            "adding",
            {"sequence_length": 1},
            "adding: sequence_length must be between 2 and 1000. "
            "Received: sequence_length=1",
        ),
        (
            "temporal_order",
            {"sequence_length": 1001},
            "temporal_order: sequence_length must be between 4 and 1000. "
            "Received: sequence_length=1001",
        ),
        (
            "copy_memory",
            {"sequence_length": 15},
            "copy_memory: sequence_length=15 leaves no room for the copy delay: "
            "it must be >= 21 (10 symbols, a delay T >= 1, 10 recall steps; "
            "T = sequence_length - 20)",
        ),
        (
            "copy_memory",
            {"sequence_length": 1001},
            "copy_memory: sequence_length must be between 21 and 1000. "
            "Received: sequence_length=1001",
        ),
        (
            "adding",
            {"num_train": 0},
            "adding: num_train must be at least 1. Received: num_train=0",
        ),
        (
            "temporal_order",
            {"num_eval": 2.5},
            "temporal_order: num_eval must be an integer. Received: num_eval=2.5",
        ),
        (
            "adding",
            {"data_seed": -1},
            "adding: data_seed must be between 0 and 2**32 - 1. Received: data_seed=-1",
        ),
    ],
)
def test_bad_arguments_are_refused_before_building(name, kwargs, message, tmp_path):
    with pytest.raises(ValueError) as error:
        load_task(name, data_dir=str(tmp_path), **kwargs)
    assert str(error.value) == message
    assert os.listdir(tmp_path) == []


# The loss and metric contracts, on hand-made tensors.


def test_regression_loss_is_per_example_mse():
    task = regression_task(
        "r",
        input_kind="vector",
        x_train=np.zeros((4, 3)),
        y_train=np.array([[0.0, 0.0], [1, 1], [2, 2], [3, 3]]),
        x_eval=np.zeros((2, 3)),
        y_eval=np.array([[1.5, 1.5], [0.0, 3.0]]),
        description="Hand-made.",
    )
    assert isinstance(task, RegressionTask)
    assert task.main_metric == "mse" and not task.higher_is_better
    assert task.num_outputs == 2 and task.y_train.dtype == np.float32
    # The training mean is 1.5: errors (0, 0) and (1.5, 1.5).
    assert task.baselines == {"mse": 1.125, "loss": 1.125}
    y = tf.constant([[1.0, 0.0], [0.0, 0.0]])
    outputs = tf.constant([[3.0, 1.0], [0.5, -0.5]], tf.float16)
    loss = tf.function(task.loss)(y, outputs)
    assert loss.dtype == tf.float32
    np.testing.assert_allclose(loss, [2.5, 0.25])
    np.testing.assert_allclose(task.metrics(y, outputs)["mse"], [2.5, 0.25])


def per_step_task(scored_steps=2):
    return sequence_label_task(
        "s",
        input_kind="sequence",
        x_train=np.zeros((4, 3, 1)),
        y_train=np.array([[0, 0, 1], [0, 0, 1], [0, 0, 2], [0, 0, 2]]),
        x_eval=np.zeros((2, 3, 1)),
        y_eval=np.array([[0, 0, 1], [0, 0, 2]]),
        num_classes=3,
        scored_steps=scored_steps,
        description="Hand-made.",
    )


def test_sequence_label_loss_averages_steps_and_recall_scores_the_last():
    task = per_step_task()
    assert isinstance(task, SequenceLabelTask) and task.output_per_step
    assert task.main_metric == "loss" and not task.higher_is_better
    y = tf.constant([[0, 1, 2], [2, 2, 2]])
    logits = tf.constant(
        [
            [[2.0, 0, 0], [2, 0, 0], [0, 0, 2]],  # Wrong only at step 1.
            [[0.0, 0, 0], [0, 0, 2], [2, 0, 0]],  # A tie, right, wrong.
        ]
    )
    confident, unsure = math.log(math.exp(2) + 2), math.log(3)
    expected = [
        (confident - 2 + confident + confident - 2) / 3,
        (unsure + confident - 2 + confident) / 3,
    ]
    np.testing.assert_allclose(tf.function(task.loss)(y, logits), expected, rtol=1e-6)
    recall = tf.function(task.metrics)(y, logits)["recall_accuracy"]
    assert recall.dtype == tf.float32
    np.testing.assert_array_equal(recall, [0.5, 0.5])


def test_sequence_label_baselines_and_scored_steps():
    task = per_step_task()
    # Steps 0 and 1 are always 0: no loss. Step 2 is 1 or 2, as often: ln 2.
    assert task.baselines["loss"] == pytest.approx(math.log(2) / 3)
    # Of the last two steps, step 1 is always right, step 2 (a tie, so 1)
    # half the time.
    assert task.baselines["recall_accuracy"] == 0.75
    with pytest.raises(ValueError, match="s: scored_steps must be between 1 and 3"):
        per_step_task(scored_steps=4)


def test_sequence_losses_run_under_a_mirrored_strategy():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    task = per_step_task()
    y = tf.constant([[0, 1, 2], [2, 2, 2]])
    logits = tf.random.stateless_normal([2, 3, 3], seed=[1, 2])

    @tf.function
    def step(y, logits):
        return task.loss(y, logits), task.metrics(y, logits)["recall_accuracy"]

    dataset = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors((y, logits)).unbatch().batch(2)
    )
    loss, recall = strategy.run(step, args=next(iter(dataset)))
    loss = tf.concat(strategy.experimental_local_results(loss), 0)
    recall = tf.concat(strategy.experimental_local_results(recall), 0)
    np.testing.assert_allclose(loss, task.loss(y, logits), rtol=1e-6)
    np.testing.assert_array_equal(recall, task.metrics(y, logits)["recall_accuracy"])


@pytest.mark.parametrize("name", NAMES)
def test_training_batches_fit_the_loss_and_metrics(name, data_dir):
    task = tiny(name, data_dir)
    x, y = next(iter(task.train_dataset(8, seed=0, start_step=37)))
    assert x.shape == (8, *task.input_shape) and x.dtype == tf.float32
    assert y.shape == (8, *task.y_train.shape[1:])
    steps = task.input_shape[0]
    logits = tf.zeros(
        [8, steps, task.num_outputs] if task.output_per_step else [8, task.num_outputs]
    )
    assert task.loss(y, logits).shape == (8,)
    for value in task.metrics(y, logits).values():
        assert value.shape == (8,) and value.dtype == tf.float32
    assert task.main_metric in {"loss", *task.metrics(y, logits)}
    assert task.description and "\n" not in task.description
