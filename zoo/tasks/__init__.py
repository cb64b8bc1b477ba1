"""Tasks: the data a model is trained on, with its loss, metrics and pipelines.

    >>> import zoo
    >>> zoo.list_tasks()
    ['cifar10', 'digits', 'fashion_mnist', 'mnist', 'teacher']
    >>> task = zoo.load_task("digits", data_dir="/tmp/tfds")

Tested by tests/zoo/test_tasks.py.
"""

# The task modules register their loaders when imported; importing them here,
# by name, keeps the registry complete without hidden import magic.
from zoo.tasks import catalog, digits, teacher  # noqa: F401
from zoo.tasks.base import (
    Task,
    TaskDataError,
    TaskSpec,
    list_tasks,
    load_task,
    register_task,
    task_spec,
)

__all__ = [
    "Task",
    "TaskDataError",
    "TaskSpec",
    "list_tasks",
    "load_task",
    "register_task",
    "task_spec",
]
