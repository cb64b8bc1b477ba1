"""The `digits` task: scikit-learn's real 8x8 handwritten digits, via TFDS.

scikit-learn ships the 1797 images (UCI optical recognition of handwritten
digits, test set), so the TFDS dataset builds offline in about a second. The
split is fixed by `np.random.RandomState(0)`: 359 test and 1438 train images.

    python -c "import zoo; print(zoo.load_task('digits', data_dir='/tmp/tfds'))"

Tested by tests/zoo/test_tasks.py.
"""

import numpy as np

from zoo.tasks.base import Task, classification_task, register_task

DIGITS_COUNT = 1797
NUM_TEST = 359  # One fifth of the 1797 images, rounded down.


def load_digits_arrays(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Builds gradzoo_digits under data_dir if needed; returns (images, labels).

    The builder (zoo/tasks/builders.py) and TFDS are imported here, when
    data is read, not when the task is registered.
    """
    import tensorflow_datasets as tfds

    from zoo.tasks.builders import GradzooDigits

    builder = GradzooDigits(data_dir=data_dir)
    builder.download_and_prepare()
    data = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    return data["image"], data["label"]


@register_task("digits", input_kind="image", tiny={})
def digits_task(*, data_dir: str) -> Task:
    """The 10-class digits task, pixels scaled from 0..16 to [0, 1]."""
    x_train, y_train = load_digits_arrays(data_dir, "train")
    x_eval, y_eval = load_digits_arrays(data_dir, "test")
    return classification_task(
        "digits",
        input_kind="image",
        x_train=x_train / 16.0,
        y_train=y_train,
        x_eval=x_eval / 16.0,
        y_eval=y_eval,
        num_classes=10,
        description="scikit-learn's 8x8 digits (UCI), built as TFDS gradzoo_digits.",
    )
