"""Image tasks from the TFDS catalog: `mnist`, `fashion_mnist`, `cifar10`.

gradzoo never downloads. These tasks read data already prepared under
data_dir and, when it is missing, raise a one-line TaskDataError that says how
to get it onto this machine.

    python -c "import zoo; print(zoo.load_task('mnist', data_dir='/tmp/tfds'))"

`cifar10` takes `augment=True` (`--augment`): the standard CIFAR training
augmentation of He et al. 2016 (pad 4, random crop, horizontal flip),
drawn from (seed, step) like every batch (`Task.train_dataset`).

Tested by tests/zoo/test_tasks.py (with `tfds.testing.mock_data`) and
tests/zoo/test_image_tasks.py.
"""

import dataclasses
import functools

import numpy as np

from zoo.tasks.base import Task, TaskDataError, classification_task, register_task

# name -> what the description says about the data; all have 10 classes and
# uint8 pixels, and "train" and "test" splits.
CATALOG = {
    "mnist": "MNIST handwritten digits, 28x28 grey",
    "fashion_mnist": "Fashion-MNIST clothing, 28x28 grey",
    "cifar10": "CIFAR-10 objects, 32x32 colour",
}


def _read_split(name: str, split: str, data_dir: str) -> tuple[np.ndarray, ...]:
    """All of a prepared split as (images, labels) NumPy arrays."""
    import tensorflow_datasets as tfds

    try:
        ds = tfds.load(
            name, split=split, data_dir=data_dir, download=False, as_supervised=True
        )
    except AssertionError:  # What tfds raises when the data is not prepared.
        raise TaskDataError(
            f"{name}: no prepared TFDS data under {data_dir}. gradzoo never "
            'downloads; on a machine with internet run `python -c "import '
            f"tensorflow_datasets as tfds; tfds.builder('{name}')"
            f'.download_and_prepare()"` and copy ~/tensorflow_datasets/{name} '
            f"to {data_dir} (or pass --data_dir)."
        ) from None
    # Batched here rather than with tfds's batch_size=-1, which sizes one batch
    # from the split metadata and, when that is absent (as under mock_data),
    # aborts the whole process asking for a batch of sys.maxsize.
    chunks = list(tfds.as_numpy(ds.batch(10_000)))
    return tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))


def catalog_task(name: str, *, data_dir: str) -> Task:
    """A catalog image task, pixels scaled from 0..255 to [0, 1]."""
    x_train, y_train = _read_split(name, "train", data_dir)
    x_eval, y_eval = _read_split(name, "test", data_dir)
    return classification_task(
        name,
        input_kind="image",
        x_train=x_train / np.float32(255),
        y_train=y_train,
        x_eval=x_eval / np.float32(255),
        y_eval=y_eval,
        num_classes=10,
        description=f"{CATALOG[name]}: TFDS '{name}' from {data_dir}.",
    )


for _name in ("mnist", "fashion_mnist"):
    register_task(_name, input_kind="image")(functools.partial(catalog_task, _name))


@register_task("cifar10", input_kind="image")
def cifar10_task(*, data_dir: str, augment: bool = False) -> Task:
    """CIFAR-10, pixels scaled to [0, 1], optionally augmented as He et al. 2016.

    Args:
      data_dir: where the prepared TFDS cifar10 lives.
      augment: pad 4, random crop, random horizontal flip of every training
        batch (cifar10 only), drawn from (seed, step).
    """
    task = catalog_task("cifar10", data_dir=data_dir)
    if not augment:
        return task
    return dataclasses.replace(
        task,
        augmentation="crop_flip",
        description=task.description + " Training batches: pad 4, random crop, "
        "random horizontal flip.",
    )
