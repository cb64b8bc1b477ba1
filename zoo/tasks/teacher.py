"""The `teacher` task: Gaussian inputs labelled by a random tanh network.

Inputs are x ~ N(0, I). The label is the argmax of a fixed one-hidden-layer
tanh network drawn from `data_seed`, so a deep student has a nonlinear target
it can fit exactly (a linear classifier gets about two thirds right). Everything
is NumPy and in memory; no disk is needed.

    python -c "import zoo; print(zoo.load_task('teacher').baselines)"

Tested by tests/zoo/test_tasks.py.
"""

import numpy as np

from zoo.tasks.base import Task, check_memory, classification_task, register_task

TEACHER_WIDTH = 64
# Input weights large enough that many tanh units saturate: the target is
# then far from linear in x.
TEACHER_GAIN = 2.0


def _teacher(rng: np.random.RandomState, num_features: int, num_classes: int):
    """Draws the teacher and returns it as a function from inputs to labels."""
    w1 = rng.standard_normal((num_features, TEACHER_WIDTH))
    w1 *= TEACHER_GAIN / np.sqrt(num_features)
    b1 = 0.5 * rng.standard_normal(TEACHER_WIDTH)
    w2 = rng.standard_normal((TEACHER_WIDTH, num_classes)) / np.sqrt(TEACHER_WIDTH)

    def logits(x):
        return np.tanh(x @ w1 + b1) @ w2

    # A random network's argmax favours a few classes and may never pick
    # some. Output biases fitted on a reference sample balance the classes:
    # a Robbins-Monro search (steps 1/(t+2)) for equal argmax frequencies.
    reference = logits(rng.standard_normal((8192, num_features)))
    b2 = np.zeros(num_classes)
    for t in range(100):
        counts = np.bincount((reference + b2).argmax(1), minlength=num_classes)
        frequency = counts / len(reference)
        b2 -= np.log((frequency + 0.1 / num_classes) * num_classes) / (t + 2)

    return lambda x: np.argmax(logits(x) + b2, axis=1)


@register_task(
    "teacher",
    input_kind="vector",
    tiny=dict(num_features=8, num_classes=4, num_train=256, num_eval=64),
)
def teacher_task(
    *,
    data_dir: str,
    num_features: int = 32,
    num_classes: int = 10,
    num_train: int = 8192,
    num_eval: int = 2048,
    data_seed: int = 0,
) -> Task:
    """A synthetic task; the same arguments give byte-identical arrays.

    Args:
      data_dir: unused: the data is generated in memory.
      num_features: input dimensions (teacher only).
      num_classes: classes the teacher labels (teacher only).
      num_train: Training examples.
      num_eval: Evaluation examples.
      data_seed: Seeds the data; the same arguments give byte-identical arrays.
    """
    del data_dir  # Generated in memory.
    check_memory(
        f"teacher with {num_train + num_eval} examples of {num_features} features",
        (num_train + num_eval) * num_features * 8 * 3,  # float64 drafts, float32
    )
    # RandomState, not default_rng: its streams are frozen across NumPy
    # versions. Separate streams keep the teacher and the evaluation set the
    # same whatever num_train is.
    label = _teacher(np.random.RandomState(data_seed), num_features, num_classes)
    x_train = np.random.RandomState([data_seed, 1]).standard_normal(
        (num_train, num_features)
    )
    x_eval = np.random.RandomState([data_seed, 2]).standard_normal(
        (num_eval, num_features)
    )
    # Label the float32 inputs the model will see, not their float64 drafts.
    x_train, x_eval = x_train.astype(np.float32), x_eval.astype(np.float32)
    return classification_task(
        "teacher",
        input_kind="vector",
        x_train=x_train,
        y_train=label(x_train.astype(np.float64)),
        x_eval=x_eval,
        y_eval=label(x_eval.astype(np.float64)),
        num_classes=num_classes,
        description=(
            f"Synthetic: N(0, I) inputs in {num_features} dimensions labelled by "
            f"a random tanh teacher network (data_seed={data_seed})."
        ),
    )
