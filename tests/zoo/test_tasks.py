"""Tests for zoo.tasks: the registry, the Task contract and every task.

.venv/bin/python -m pytest tests/zoo/test_tasks.py -q
"""

import contextlib
import math

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from sklearn import datasets

from zoo.tasks import (
    TaskDataError,
    list_tasks,
    load_task,
    register_task,
    task_spec,
)
from zoo.tasks.base import (
    RegressionTask,
    classification_baselines,
    classification_task,
)
from zoo.tasks.catalog import CATALOG
from zoo.tasks.digits import load_digits_arrays

CATALOG_SHAPES = {
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "cifar10": (32, 32, 3),
}


def id_task(num_train=50, num_eval=10):
    """A task whose single feature is the example's index, to track rows."""
    return classification_task(
        "ids",
        input_kind="vector",
        x_train=np.arange(num_train)[:, None],
        y_train=np.arange(num_train) % 3,
        x_eval=np.arange(num_eval)[:, None] + 1000,
        y_eval=np.arange(num_eval) % 3,
        num_classes=3,
        description="Row indices.",
    )


def take(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


# The registry.


def test_registry_lists_every_task():
    assert list_tasks() == [
        "adding",
        "cifar10",
        "copy_memory",
        "digits",
        "fashion_mnist",
        "mnist",
        "motifs",
        "teacher",
        "temporal_order",
    ]


@pytest.mark.parametrize("name", list_tasks())
def test_every_task_loads_with_its_tiny_arguments(name, data_dir):
    spec = task_spec(name)
    # Catalog datasets need a download, so only their loading path is run,
    # on fake examples.
    mocked = name in CATALOG
    fake_data = tfds.testing.mock_data(num_examples=30)
    with fake_data if mocked else contextlib.nullcontext():
        task = load_task(name, data_dir=data_dir, **spec.tiny)

    assert task.name == name
    assert task.input_kind == spec.input_kind
    if mocked:
        assert task.input_shape == CATALOG_SHAPES[name]
    regression = isinstance(task, RegressionTask)
    for x, y in [(task.x_train, task.y_train), (task.x_eval, task.y_eval)]:
        assert x.dtype == np.float32
        assert x.shape == (len(y), *task.input_shape)
        if regression:
            assert y.dtype == np.float32 and y.shape == (len(x), task.num_outputs)
        else:
            assert y.dtype == np.int32
            assert 0 <= y.min() and y.max() < task.num_outputs
    if task.input_kind == "image" and name != "motifs":  # motifs: zero-mean noise
        # Scaled to [0, 1], and not to a sliver of it.
        assert task.x_train.min() >= 0 and 0.5 < task.x_train.max() <= 1
    # A baseline for the loss and every metric, so each is printed beside it.
    logits_shape = [8, task.num_outputs]
    if task.output_per_step:
        logits_shape.insert(1, task.input_shape[0])
    logits = tf.zeros(logits_shape)
    metrics = task.metrics(task.y_eval[:8], logits)
    assert set(task.baselines) == {"loss", *metrics}
    assert task.description and "\n" not in task.description

    x, y = next(iter(task.train_dataset(8, seed=0)))
    assert x.shape == (8, *task.input_shape)
    assert y.shape == (8, *task.y_train.shape[1:])
    assert task.loss(y, logits).shape == (8,)
    measured = {"loss": task.loss(y, logits), **task.metrics(y, logits)}
    assert measured[task.main_metric].shape == (8,)
    eval_labels = np.concatenate([y for _, y in task.eval_dataset(16)])
    np.testing.assert_array_equal(eval_labels, task.y_eval)


def test_unknown_task_name_lists_the_known_ones():
    known = ", ".join(list_tasks())
    with pytest.raises(
        ValueError, match=rf"Unknown task 'foo'\. Known tasks: {known}\."
    ):
        load_task("foo")
    with pytest.raises(ValueError, match="'foo'.*teacher"):
        task_spec("foo")


def test_unknown_argument_is_named_with_the_accepted_ones():
    with pytest.raises(ValueError, match="num_hidden.*data_seed, num_classes"):
        load_task("teacher", num_hidden=3)
    with pytest.raises(ValueError, match="'digits' takes no argument data_seed"):
        load_task("digits", data_seed=1)


def test_registering_refuses_bad_input_kind_and_duplicates():
    with pytest.raises(ValueError, match="input_kind='text'"):
        register_task("new", input_kind="text")
    with pytest.raises(ValueError, match="'digits' is registered twice"):
        register_task("digits", input_kind="image")(lambda *, data_dir: None)


# The Task contract, on a task whose inputs are their own row numbers.


def test_same_seed_and_step_give_the_same_batches():
    task = id_task()
    first = take(task.train_dataset(8, seed=3), 10)
    second = take(task.train_dataset(8, seed=3), 10)
    other = take(task.train_dataset(8, seed=4), 10)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert any(
        not np.array_equal(a[0], b[0]) for a, b in zip(first, other, strict=True)
    )


@pytest.mark.parametrize("start_step", [1, 6, 13])
def test_resuming_at_a_step_continues_the_same_stream(start_step):
    task = id_task()  # 6 steps per epoch, so these start in epochs 0, 1 and 2.
    full = take(task.train_dataset(8, seed=5), start_step + 4)
    resumed = take(task.train_dataset(8, seed=5, start_step=start_step), 4)
    for (x1, y1), (x2, y2) in zip(full[start_step:], resumed, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


@pytest.mark.parametrize("num_train", [48, 50])
def test_each_epoch_sees_every_example_once(num_train):
    task = id_task(num_train=num_train)
    dataset = task.train_dataset(8, seed=0)
    assert dataset.element_spec[0].shape == (8, 1)
    batches = take(dataset, 18)  # Three epochs of six steps.
    rows = np.concatenate([x[:, 0] for x, _ in batches]).reshape(3, 48)
    for epoch in rows:
        assert len(set(epoch)) == 48  # With 50 examples, 2 sit the epoch out.
        assert set(epoch) <= set(range(num_train))
    assert not np.array_equal(rows[0], rows[1])
    # Labels travel with their inputs.
    for x, y in batches:
        np.testing.assert_array_equal(y, x[:, 0].astype(int) % 3)


def test_batch_larger_than_training_set_is_refused():
    with pytest.raises(ValueError, match="50 training examples.*batch_size=64"):
        id_task().train_dataset(64, seed=0)


def test_eval_dataset_covers_the_eval_set_once_in_order():
    batches = take(id_task(num_eval=10).eval_dataset(4), 100)
    assert [len(y) for _, y in batches] == [4, 4, 2]
    rows = np.concatenate([x[:, 0] for x, _ in batches])
    np.testing.assert_array_equal(rows, np.arange(10) + 1000)


def test_baselines_match_a_hand_computation():
    # Train frequencies 1/2, 1/3, 1/6; class 0 is the most frequent.
    baselines = classification_baselines(
        np.array([0, 0, 0, 1, 1, 2]), np.array([0, 1, 2, 2]), num_classes=3
    )
    assert baselines["accuracy"] == 0.25
    expected = -(math.log(1 / 2) + math.log(1 / 3) + 2 * math.log(1 / 6)) / 4
    assert baselines["loss"] == pytest.approx(expected)


def test_loss_baseline_is_the_loss_of_constant_frequency_logits():
    task = load_task("teacher", num_classes=4, num_train=300, num_eval=100)
    frequency = np.bincount(task.y_train, minlength=4) / len(task.y_train)
    logits = np.tile(np.log(frequency), (len(task.y_eval), 1))
    loss = np.mean(task.loss(task.y_eval, logits))
    assert loss == pytest.approx(task.baselines["loss"], rel=1e-5)


def test_loss_and_accuracy_per_example():
    task = id_task()
    logits = tf.constant([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = tf.constant([0, 1])
    log_z = math.log(math.exp(2) + 2)
    expected = [log_z - 2, math.log(3)]
    np.testing.assert_allclose(task.loss(y, logits), expected, rtol=1e-6)
    # A tie goes to the lowest class, so the second example counts as wrong.
    np.testing.assert_array_equal(task.metrics(y, logits)["accuracy"], [1, 0])


# The tasks' data.


def test_teacher_is_reproducible_from_its_seed():
    a, b, c = (load_task("teacher", data_seed=s) for s in (0, 0, 1))
    for field in ("x_train", "y_train", "x_eval", "y_eval"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes()
        assert getattr(a, field).tobytes() != getattr(c, field).tobytes()


@pytest.mark.parametrize("kwargs", [{}, task_spec("teacher").tiny, {"num_classes": 2}])
def test_teacher_classes_are_roughly_balanced(kwargs):
    task = load_task("teacher", **kwargs)
    histogram = np.bincount(task.y_train, minlength=task.num_outputs)
    print("teacher class histogram", kwargs, histogram)
    # An untuned random teacher gives some classes a fifth of this or none.
    assert histogram.min() > 0.5 * len(task.y_train) / task.num_outputs


def test_digits_builds_the_same_documented_split_every_time(tmp_path):
    first = [load_digits_arrays(str(tmp_path / "a"), s) for s in ("train", "test")]
    again = [load_digits_arrays(str(tmp_path / "b"), s) for s in ("train", "test")]
    for (x1, y1), (x2, y2) in zip(first, again, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    (x_train, _), (x_test, _) = first
    assert len(x_train) == 1438 and len(x_test) == 359
    assert x_train.dtype == np.uint8 and x_train.shape[1:] == (8, 8, 1)
    # Together the splits are exactly scikit-learn's images, each once.
    ours = np.concatenate([x_train, x_test]).reshape(1797, 64)
    theirs = datasets.load_digits().data.astype(np.uint8)
    np.testing.assert_array_equal(np.unique(ours, axis=0), np.unique(theirs, axis=0))
    assert len(np.unique(ours, axis=0)) == len(np.unique(theirs, axis=0))


def test_digits_task_scales_pixels_by_sixteen(data_dir):
    task = load_task("digits", data_dir=data_dir)
    x_train, _ = load_digits_arrays(data_dir, "train")
    np.testing.assert_array_equal(task.x_train * 16, x_train)
    assert task.input_shape == (8, 8, 1) and task.num_outputs == 10


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_missing_catalog_data_is_a_one_line_task_data_error(name, tmp_path):
    with pytest.raises(TaskDataError) as error:
        load_task(name, data_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{name}: no prepared TFDS data under {tmp_path}.")
    assert f"tfds.builder('{name}').download_and_prepare()" in message


def test_data_dir_defaults_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADZOO_DATA_DIR", str(tmp_path))
    with pytest.raises(TaskDataError, match=f"under {tmp_path}"):
        load_task("mnist")
