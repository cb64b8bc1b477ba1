"""Tasks: the data a model is trained on, with its loss, metrics and pipelines.

    >>> import zoo
    >>> zoo.list_tasks()
    ['adding', 'cifar10', 'copy_memory', 'digits', 'fashion_mnist', 'mnist',
     'motifs', 'teacher', 'temporal_order']
    >>> task = zoo.load_task("digits", data_dir="/tmp/tfds")

Tested by tests/zoo/test_tasks.py and tests/zoo/test_sequence_tasks.py.
"""

# The task modules register their loaders when imported; importing them here,
# by name, keeps the registry complete without hidden import magic.
from zoo.tasks import catalog, digits, motifs, sequence, teacher  # noqa: F401
from zoo.tasks.base import (
    RegressionTask,
    SequenceLabelTask,
    Task,
    TaskDataError,
    TaskSpec,
    list_tasks,
    load_task,
    register_task,
    task_spec,
)

__all__ = [
    "RegressionTask",
    "SequenceLabelTask",
    "Task",
    "TaskDataError",
    "TaskSpec",
    "list_tasks",
    "load_task",
    "register_task",
    "task_spec",
]
