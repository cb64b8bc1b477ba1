"""The `digits` task: scikit-learn's real 8x8 handwritten digits, via TFDS.

scikit-learn ships the 1797 images (UCI optical recognition of handwritten
digits, test set), so the TFDS dataset builds offline in about a second. The
split is fixed by `np.random.RandomState(0)`: 359 test and 1438 train images.

    python -c "import zoo; print(zoo.load_task('digits', data_dir='/tmp/tfds'))"

Tested by tests/zoo/test_tasks.py.
"""

import numpy as np
import tensorflow_datasets as tfds
from sklearn import datasets

from zoo.tasks.base import Task, classification_task, register_task

NUM_TEST = 359  # One fifth of the 1797 images, rounded down.


class GradzooDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 digits as a TFDS dataset (registered as gradzoo_digits).

    The name carries a prefix so it can never clash with the TFDS catalog.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release: sklearn digits, fixed 80/20 split."}

    def _info(self) -> tfds.core.DatasetInfo:
        # Building DatasetInfo directly, not from package metadata files, so
        # the builder needs nothing beside this module.
        return tfds.core.DatasetInfo(
            builder=self,
            description="8x8 grey-level handwritten digits, pixels 0..16.",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The data ships with scikit-learn: nothing to download.
        order = np.random.RandomState(0).permutation(1797)
        return {
            "train": self._generate_examples(order[NUM_TEST:]),
            "test": self._generate_examples(order[:NUM_TEST]),
        }

    def _generate_examples(self, indices):
        digits = datasets.load_digits()
        images = digits.images.astype(np.uint8)[..., None]
        for i in indices:
            yield int(i), {"image": images[i], "label": int(digits.target[i])}


def load_digits_arrays(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Builds gradzoo_digits under data_dir if needed; returns (images, labels)."""
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
