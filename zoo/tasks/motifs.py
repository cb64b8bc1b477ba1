"""The `motifs` task: find which small pattern hides somewhere in a noisy image.

Each class owns one 3x3 motif, drawn from `data_seed`, with zero mean and the
same energy as every other motif. An image is Gaussian noise with its class's
motif added at a uniformly random position; the label is the motif.

Why it separates convolutions from an MLP on raw pixels: the answer is a
local pattern at an unknown place. A convolution that matches the motif,
a ReLU and global pooling find it wherever it is, with one 3x3 filter per
class. Nothing global gives it away: every motif has zero mean and the same
energy, so image mean and variance do not depend on the class, and averaged
over positions a class's mean image is zero away from the border, so a
linear classifier on pixels is near chance (tests/zoo/test_image_tasks.py
measures it). An MLP must learn a detector for every motif at every one of
the (S-2)^2 positions from the examples that put it there.

    python -c "import zoo; print(zoo.load_task('motifs').baselines)"

Tested by tests/zoo/test_image_tasks.py.
"""

from typing import Annotated

import numpy as np

from zoo.signature import AtLeast, Positive
from zoo.tasks.base import Task, classification_task, register_task

MOTIF_SIZE = 3


def motif_bank(data_seed: int, num_classes: int) -> np.ndarray:
    """The class motifs [num_classes, 3, 3]: zero mean, unit RMS per pixel."""
    rng = np.random.RandomState([data_seed, 0])
    motifs = rng.standard_normal((num_classes, MOTIF_SIZE, MOTIF_SIZE))
    motifs -= motifs.mean(axis=(1, 2), keepdims=True)
    motifs /= np.sqrt((motifs**2).mean(axis=(1, 2), keepdims=True))
    return motifs


def _images(rng, motifs, count, size, noise):
    """(images [count, size, size, 1], labels): noise plus one placed motif."""
    num_classes = len(motifs)
    labels = rng.permutation(np.arange(count) % num_classes)
    images = noise * rng.standard_normal((count, size, size))
    corners = rng.randint(0, size - MOTIF_SIZE + 1, size=(count, 2))
    for i, (r, c) in enumerate(corners):
        images[i, r : r + MOTIF_SIZE, c : c + MOTIF_SIZE] += motifs[labels[i]]
    return images[..., None].astype(np.float32), labels


@register_task(
    "motifs",
    input_kind="image",
    tiny=dict(image_size=8, num_train=64, num_eval=32),
)
def motifs_task(
    *,
    data_dir: str,
    image_size: Annotated[int, AtLeast(MOTIF_SIZE)] = 16,
    num_classes: Annotated[int, AtLeast(2)] = 4,
    noise: Annotated[float, Positive()] = 0.5,
    num_train: Annotated[int, AtLeast(1)] = 4096,
    num_eval: Annotated[int, AtLeast(1)] = 1024,
    data_seed: int = 0,
) -> Task:
    """A synthetic image task; the same arguments give byte-identical arrays.

    Args:
      data_dir: unused: the data is generated in memory.
      image_size: height and width of the square images.
      num_classes: classes, one 3x3 motif each.
      noise: std of the Gaussian background; motif pixels have RMS 1.
      num_train: Training examples.
      num_eval: Evaluation examples.
      data_seed: Seeds the data; the same arguments give byte-identical arrays.
    """
    del data_dir  # Generated in memory.
    motifs = motif_bank(data_seed, num_classes)
    # Separate streams: the evaluation set does not depend on num_train.
    x_train, y_train = _images(
        np.random.RandomState([data_seed, 1]), motifs, num_train, image_size, noise
    )
    x_eval, y_eval = _images(
        np.random.RandomState([data_seed, 2]), motifs, num_eval, image_size, noise
    )
    return classification_task(
        "motifs",
        input_kind="image",
        x_train=x_train,
        y_train=y_train,
        x_eval=x_eval,
        y_eval=y_eval,
        num_classes=num_classes,
        description=(
            f"Synthetic: which of {num_classes} zero-mean 3x3 motifs sits at a "
            f"random place in a {image_size}x{image_size} image of N(0, "
            f"{noise:g}^2) noise (data_seed={data_seed})."
        ),
    )
