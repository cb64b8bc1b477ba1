"""gradzoo's model zoo: models, the pairs that compare them, and tasks.

    >>> import zoo
    >>> zoo.list_models()
    >>> model = zoo.get_model("residual_mlp", input_shape=(64,), num_outputs=10)
    >>> print(zoo.get_pair("mlp_residual").describe())
    >>> zoo.depth_axis(model)  # the variables analysis profiles, by depth
    >>> model = zoo.load_model("runs/x/model.keras")  # in any process

`import zoo` does not import TensorFlow or Keras (about 0.3 s instead of
5-8 s): the registries, builder signatures, pairs and task specs are plain
Python, and Keras, TensorFlow and TFDS are imported where a model is built
or loaded or a task's data is read. So a command's --help, its flags and its
refusals of bad input cost no TensorFlow start-up. The price: a model.keras
that holds one of gradzoo's own layers (zoo/layers.py) loads with
`zoo.load_model(path)`, or with `keras.saving.load_model` after `import
zoo.layers`, not after a bare `import zoo`.

Tested by tests/zoo and tests/test_startup.py.
"""

# The family modules register their builders when imported; importing them
# here, by name, keeps the registry complete without hidden import magic.
from zoo import cnn, mlp, pretraining, rnn  # noqa: F401
from zoo.pairs import Arm, Pair, get_pair, list_pairs
from zoo.registry import (
    CPU_ALLOCATORS,
    ModelSpec,
    depth_axis,
    get_model,
    kernel_depth_axis,
    list_models,
    load_model,
    model_spec,
    register_model,
)
from zoo.rnn import hidden_state_model, recurrent_layers
from zoo.tasks import (
    Task,
    TaskDataError,
    list_tasks,
    load_task,
    register_task,
    task_spec,
)

__all__ = [
    "CPU_ALLOCATORS",
    "Arm",
    "ModelSpec",
    "Pair",
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
    "load_model",
    "load_task",
    "model_spec",
    "recurrent_layers",
    "register_model",
    "register_task",
    "task_spec",
]
