"""gradzoo's model zoo: models, the pairs that compare them, and tasks.

    >>> import zoo
    >>> zoo.list_models()
    >>> model = zoo.get_model("residual_mlp", input_shape=(64,), num_outputs=10)
    >>> print(zoo.get_pair("mlp_residual").describe())
    >>> zoo.depth_axis(model)  # the variables analysis profiles, by depth

Tested by tests/zoo.
"""

# The family modules register their builders when imported; importing them
# here, by name, keeps the registry complete without hidden import magic.
from zoo import cnn, mlp, pretraining, rnn  # noqa: F401
from zoo.pairs import Arm, Pair, get_pair, list_pairs
from zoo.registry import (
    ModelSpec,
    depth_axis,
    get_model,
    kernel_depth_axis,
    list_models,
    model_spec,
    register_model,
)
from zoo.rnn import RecurrentInitializer, hidden_state_model, recurrent_layers
from zoo.tasks import (
    Task,
    TaskDataError,
    list_tasks,
    load_task,
    register_task,
    task_spec,
)

__all__ = [
    "Arm",
    "ModelSpec",
    "Pair",
    "RecurrentInitializer",
    "Task",
    "TaskDataError",
    "depth_axis",
    "get_model",
    "get_pair",
    "hidden_state_model",
    "kernel_depth_axis",
    "list_models",
    "list_pairs",
    "list_tasks",
    "load_task",
    "model_spec",
    "recurrent_layers",
    "register_model",
    "register_task",
    "task_spec",
]
