"""The TFDS dataset builders of the data gradzoo generates on this machine.

`gradzoo_digits` (zoo/tasks/digits.py) and the long-range sequence datasets
`gradzoo_adding`, `gradzoo_copy_memory`, `gradzoo_temporal_order`
(zoo/tasks/sequence.py, which documents the data). The task loaders import
this module when they build or read data, so that listing the tasks and
reading their arguments (for flags and config checks) needs neither TFDS
nor TensorFlow.

Tested by tests/zoo/test_tasks.py and tests/zoo/test_sequence_tasks.py.
"""

import abc
import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from zoo.tasks.digits import DIGITS_COUNT, NUM_TEST
from zoo.tasks.sequence import (
    COPY_DATA_SYMBOLS,
    COPY_DELIMITER,
    COPY_LENGTH,
    NUM_DISTRACTORS,
    SPLIT_STREAMS,
    SYMBOL_B,
    SYMBOL_E,
    SYMBOL_X,
    TEMPORAL_CLASSES,
    relevant_positions,
)


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
        order = np.random.RandomState(0).permutation(DIGITS_COUNT)
        return {
            "train": self._generate_examples(order[NUM_TEST:]),
            "test": self._generate_examples(order[:NUM_TEST]),
        }

    def _generate_examples(self, indices):
        from sklearn import datasets

        digits = datasets.load_digits()
        images = digits.images.astype(np.uint8)[..., None]
        for i in indices:
            yield int(i), {"image": images[i], "label": int(digits.target[i])}


@dataclasses.dataclass(eq=False, kw_only=True)
class SequenceConfig(tfds.core.BuilderConfig):
    """One generated dataset: its length, seed and split sizes."""

    sequence_length: int
    data_seed: int
    num_train: int
    num_eval: int


def sequence_config(
    *, sequence_length: int, data_seed: int, num_train: int, num_eval: int
) -> SequenceConfig:
    """The config for these arguments, named after them (its directory name)."""
    return SequenceConfig(
        name=f"length{sequence_length}_seed{data_seed}_train{num_train}_eval{num_eval}",
        description=(
            f"sequence_length={sequence_length}, data_seed={data_seed}, "
            f"{num_train} train and {num_eval} test examples."
        ),
        sequence_length=sequence_length,
        data_seed=data_seed,
        num_train=num_train,
        num_eval=num_eval,
    )


class _GeneratedSequences(tfds.core.GeneratorBasedBuilder):
    """What the three builders share: configs made on demand, seeded splits.

    There are no predefined BUILDER_CONFIGS: a `SequenceConfig` is passed as
    `config=` and TFDS accepts it as a custom config. A subclass says what one
    example holds (`_features`) and draws a whole split at once (`_draw`).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    @abc.abstractmethod
    def _features(self, length: int) -> dict:
        """The example's features, for sequences of `length` steps.

        Default Tensor encoding: tf.train.Example stores small integers as
        1-byte varints, as compact as raw bytes here, while Encoding.BYTES
        makes TFDS 4.9 log a deprecation warning of its own at every load.
        """

    @abc.abstractmethod
    def _draw(self, rng: np.random.RandomState, num: int, length: int) -> dict:
        """`num` examples as a dict of arrays, each with a leading axis `num`."""

    def _info(self) -> tfds.core.DatasetInfo:
        # Building DatasetInfo directly, not from package metadata files, so
        # the builder needs nothing beside this module.
        config = self.builder_config
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.__doc__.splitlines()[0]} {config.description}",
            features=tfds.features.FeaturesDict(self._features(config.sequence_length)),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Generated: nothing to download.
        config = self.builder_config
        sizes = {"train": config.num_train, "test": config.num_eval}
        return {split: self._generate_examples(split, sizes[split]) for split in sizes}

    def _generate_examples(self, split, num):
        config = self.builder_config
        rng = np.random.RandomState([config.data_seed, SPLIT_STREAMS[split]])
        arrays = self._draw(rng, num, config.sequence_length)
        for i in range(num):
            yield i, {key: value[i] for key, value in arrays.items()}


class GradzooAdding(_GeneratedSequences):
    """The adding problem as a TFDS dataset (registered as gradzoo_adding).

    Features: "values" float32 [T], uniform in [0, 1); "markers" uint8 [T],
    1 at exactly two positions, one drawn uniformly from [0, T//2) and one
    from [T//2, T); "target" float32 [1], the sum of the two marked values.
    """

    def _features(self, length):
        return {
            "values": tfds.features.Tensor(shape=(length,), dtype=np.float32),
            "markers": tfds.features.Tensor(shape=(length,), dtype=np.uint8),
            "target": tfds.features.Tensor(shape=(1,), dtype=np.float32),
        }

    def _draw(self, rng, num, length):
        values = rng.random_sample((num, length)).astype(np.float32)
        half = length // 2
        first = rng.randint(0, half, size=num)
        second = rng.randint(half, length, size=num)
        rows = np.arange(num)
        markers = np.zeros((num, length), np.uint8)
        markers[rows, first] = markers[rows, second] = 1
        # The sum of the stored float32 values, rounded once.
        target = values[rows, first].astype(np.float64) + values[rows, second]
        return {
            "values": values,
            "markers": markers,
            "target": target.astype(np.float32)[:, None],
        }


class GradzooCopyMemory(_GeneratedSequences):
    """The copy memory problem as a TFDS dataset (registered as gradzoo_copy_memory).

    Features, both uint8 [L] with L = T + 20: "inputs" holds 10 data symbols
    (1..8), T - 1 blanks (0), the delimiter (9) at L - 11 and 10 blanks;
    "targets" is blank for L - 10 steps, then the 10 data symbols.
    """

    def _features(self, length):
        return {
            "inputs": tfds.features.Tensor(shape=(length,), dtype=np.uint8),
            "targets": tfds.features.Tensor(shape=(length,), dtype=np.uint8),
        }

    def _draw(self, rng, num, length):
        data = rng.randint(1, COPY_DATA_SYMBOLS + 1, size=(num, COPY_LENGTH))
        inputs = np.zeros((num, length), np.uint8)
        inputs[:, :COPY_LENGTH] = data
        inputs[:, length - COPY_LENGTH - 1] = COPY_DELIMITER
        targets = np.zeros((num, length), np.uint8)
        targets[:, length - COPY_LENGTH :] = data
        return {"inputs": inputs, "targets": targets}


class GradzooTemporalOrder(_GeneratedSequences):
    """The temporal order problem as a TFDS dataset (gradzoo_temporal_order).

    Features: "sequence" uint8 [T], ids into TEMPORAL_SYMBOLS (a b c d X Y B E):
    B at 0, E at T - 1, X or Y at t1 and t2 (see `relevant_positions`), a
    random distractor a..d everywhere else; "label" the order of the two
    relevant symbols, XX, XY, YX or YY.
    """

    def _features(self, length):
        return {
            "sequence": tfds.features.Tensor(shape=(length,), dtype=np.uint8),
            "label": tfds.features.ClassLabel(names=TEMPORAL_CLASSES),
        }

    def _draw(self, rng, num, length):
        sequence = rng.randint(0, NUM_DISTRACTORS, size=(num, length)).astype(np.uint8)
        sequence[:, 0], sequence[:, -1] = SYMBOL_B, SYMBOL_E
        (lo1, hi1), (lo2, hi2) = relevant_positions(length)
        t1 = rng.randint(lo1, hi1 + 1, size=num)
        t2 = rng.randint(lo2, hi2 + 1, size=num)
        label = rng.randint(0, len(TEMPORAL_CLASSES), size=num)
        rows = np.arange(num)
        # Class 2i + j (XX, XY, YX, YY): first symbol X + i, second X + j.
        sequence[rows, t1] = SYMBOL_X + label // 2
        sequence[rows, t2] = SYMBOL_X + label % 2
        return {"sequence": sequence, "label": label}
