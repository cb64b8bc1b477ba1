"""Image tasks for the CNNs: `motifs`, digits as images, the CIFAR augmentation.

.venv/bin/python -m pytest tests/zoo/test_image_tasks.py -q
"""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from scipy.signal import correlate2d

import zoo
from zoo.tasks.base import classification_task, crop_flip
from zoo.tasks.motifs import motif_bank


def test_motifs_is_reproducible_balanced_and_centred():
    a, b, c = (zoo.load_task("motifs", data_seed=s, num_train=512) for s in (0, 0, 1))
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.x_eval, b.x_eval)
    assert not np.array_equal(a.x_train, c.x_train)
    assert a.input_shape == (16, 16, 1) and a.num_outputs == 4
    assert np.bincount(a.y_train).tolist() == [128] * 4
    motifs = motif_bank(0, 4)
    np.testing.assert_allclose(motifs.mean(axis=(1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose((motifs**2).mean(axis=(1, 2)), 1)


def test_motifs_is_solved_by_a_matched_filter_not_by_a_linear_readout():
    # The task's claim: a convolution + global max finds the motif (measured
    # 98.0% on the 1024 evaluation images), a linear classifier on the pixels
    # is at chance (measured 25.5%, chance 25%; 42% on its own training set).
    task = zoo.load_task("motifs")
    motifs = motif_bank(0, 4)
    scores = [
        [correlate2d(image[..., 0], m, mode="valid").max() for m in motifs]
        for image in task.x_eval
    ]
    assert np.mean(np.argmax(scores, axis=1) == task.y_eval) > 0.95

    def pixels(x):
        return np.c_[x.reshape(len(x), -1), np.ones(len(x))]

    w = np.linalg.lstsq(pixels(task.x_train), np.eye(4)[task.y_train], rcond=None)[0]
    linear = np.mean((pixels(task.x_eval) @ w).argmax(1) == task.y_eval)
    assert linear < 0.32


def test_motifs_refuses_bad_arguments():
    with pytest.raises(ValueError, match="image_size must be >= 3"):
        zoo.load_task("motifs", image_size=2)
    with pytest.raises(ValueError, match="noise must be positive"):
        zoo.load_task("motifs", noise=0.0)


def test_digits_are_8x8x1_images_for_the_cnns(data_dir):
    task = zoo.load_task("digits", data_dir=data_dir)
    assert task.input_kind == "image" and task.input_shape == (8, 8, 1)
    assert "image" in zoo.model_spec("resnet").input_kinds


def _images_task(n=16, size=6):
    x = np.arange(n * size * size * 2, dtype=np.float32).reshape(n, size, size, 2)
    return classification_task(
        "grid",
        input_kind="image",
        x_train=x + 1,  # no zero pixels: zeros then come from the padding only
        y_train=np.arange(n) % 2,
        x_eval=x[:2],
        y_eval=np.arange(2),
        num_classes=2,
        description="Numbered pixels.",
    )


def test_crop_flip_is_a_shifted_maybe_flipped_window_of_the_padded_image():
    images = tf.constant(_images_task().x_train)
    out = crop_flip(images, tf.constant([3, 7], tf.int64)).numpy()
    assert out.shape == images.shape
    padded = np.pad(images.numpy(), [(0, 0), (4, 4), (4, 4), (0, 0)])
    flips = 0
    for image, result in zip(padded, out):
        windows = [image[r : r + 6, c : c + 6] for r in range(9) for c in range(9)]
        if any(np.array_equal(result, w) for w in windows):
            continue
        assert any(np.array_equal(result, w[:, ::-1]) for w in windows)
        flips += 1
    assert 0 < flips < len(out)


def test_augmented_batches_are_a_pure_function_of_seed_and_step():
    task = dataclasses.replace(_images_task(), augmentation="crop_flip")
    plain = _images_task()

    def batches(t, seed, start, count):
        ds = t.train_dataset(4, seed=seed, start_step=start).take(count)
        return [(x.numpy(), y.numpy()) for x, y in ds]

    run = batches(task, 0, 0, 6)
    again = batches(task, 0, 0, 6)
    resumed = batches(task, 0, 3, 3)
    for (x0, y0), (x1, y1) in zip(run, again):
        np.testing.assert_array_equal(x0, x1)
        np.testing.assert_array_equal(y0, y1)
    for (x0, _), (x1, _) in zip(run[3:], resumed):
        np.testing.assert_array_equal(x0, x1)
    # The same rows as without augmentation, transformed.
    for (x, y), (xp, yp) in zip(run, batches(plain, 0, 0, 6)):
        np.testing.assert_array_equal(y, yp)
        assert not np.array_equal(x, xp)
    other = batches(task, 1, 0, 1)[0][0]
    assert not np.array_equal(other, run[0][0])


def test_cifar10_takes_augment_through_the_catalog_path(data_dir):
    with tfds.testing.mock_data(num_examples=20):
        task = zoo.load_task("cifar10", data_dir=data_dir, augment=True)
        x, _ = next(iter(task.train_dataset(4, seed=0)))
    assert task.augmentation == "crop_flip" and x.shape == (4, 32, 32, 3)
    assert "random crop" in task.description
    with pytest.raises(ValueError, match="takes no argument augment"):
        zoo.load_task("mnist", data_dir=data_dir, augment=True)
