"""The one model registry: a name -> builder table, filled by the family files.

A builder is a keyword-only function returning an ordinary `keras.Model` that
maps inputs to logits, named with the registered name. Each entry also
declares the input kinds it accepts (so a trainer can refuse an RNN on an
image task), `tiny` keyword arguments that make a test-sized model, and its
depth axis: the variables, in depth order, along which analysis reads how the
gradient changes with depth (`depth_axis`).

    >>> import zoo
    >>> model = zoo.get_model("residual_mlp", input_shape=(64,), num_outputs=10)
    >>> zoo.depth_axis(model)  # ((0, "block00_dense/kernel"), (1, ...), ...)

Tested by tests/zoo/test_models.py and tests/zoo/test_depth_axis.py.
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from zoo import signature

if TYPE_CHECKING:  # Keras is imported where a model is built or loaded
    import keras

# Keyword arguments a builder takes from the task, not from the user. Every
# builder takes the first two; only sequence models take "output_per_step"
# (a prediction at every time step, as copy_memory needs, not one at the end).
TASK_ARGUMENTS = ("input_shape", "num_outputs", "output_per_step")

# A family's depth axis: (depth position, variable path) pairs of a built model,
# in depth order, position 0 closest to the input. Several variables may share
# a position (a residual block's convolutions and its projection shortcut).
DepthAxis = Callable[["keras.Model"], list[tuple[int, str]]]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and what it needs to be built."""

    name: str
    builder: Callable[..., "keras.Model"]
    input_kinds: tuple[str, ...]
    tiny: Mapping[str, object]
    depth_axis: DepthAxis
    dense_stack: bool = False  # has `blockNN_dense` hidden layers to pretrain
    cpu_allocator: str = "default"  # TensorFlow's CPU allocator for its runs

    @property
    def predicts_per_step(self) -> bool:
        """Whether the builder can output a prediction at every time step."""
        return "output_per_step" in inspect.signature(self.builder).parameters

    def arguments(self) -> dict[str, signature.Argument]:
        """The builder's hyper-parameters (no task arguments), typed, with help."""
        return signature.arguments(self.builder, exclude=TASK_ARGUMENTS)

    def defaults(self) -> dict[str, object]:
        """The builder's hyper-parameters and their defaults (no task args)."""
        return {k: a.default for k, a in self.arguments().items()}

    def resolve(self, **kwargs) -> dict[str, object]:
        """Defaults overridden by `kwargs`, checked; a bad one is a ValueError."""
        return signature.resolve(
            f"Model '{self.name}'", self.builder, kwargs, exclude=TASK_ARGUMENTS
        )


_MODELS: dict[str, ModelSpec] = {}

# TensorFlow's CPU allocators: "default" (malloc) or "bfc", which keeps the
# memory it frees for the next step. A model whose step allocates buffers of
# megabytes (a whole sequence's gates) declares "bfc": malloc hands such
# buffers back to the system and page-faults them in again on every step.
CPU_ALLOCATORS = ("default", "bfc")


def register_model(
    name: str,
    *,
    input_kinds: tuple[str, ...],
    tiny: Mapping,
    depth_axis: DepthAxis,
    dense_stack: bool = False,
    cpu_allocator: str = "default",
):
    """Decorator that adds a builder to the registry under `name`.

    The builder must name its model `name`: `depth_axis(model)` finds the
    model's entry by `model.name`. `dense_stack` declares that the model has
    the dense hidden stack greedy pretraining works on (zoo/pretraining.py
    `hidden_stack`), so a config can be checked without building the model;
    tests/zoo/test_models.py holds every declaration against a build.
    `cpu_allocator` is the TensorFlow CPU allocator a training run of the
    model should use (`CPU_ALLOCATORS`; analysis/cli.py `use_cpu_allocator`).
    """
    if cpu_allocator not in CPU_ALLOCATORS:
        raise ValueError(f"cpu_allocator must be one of {CPU_ALLOCATORS}.")

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"Model '{name}' is registered twice.")
        _MODELS[name] = ModelSpec(
            name,
            builder,
            tuple(input_kinds),
            dict(tiny),
            depth_axis,
            dense_stack,
            cpu_allocator,
        )
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS)


def lookup(table: Mapping, kind: str, name: str):
    """`table[name]`, or a ValueError that lists the known names of this kind."""
    try:
        return table[name]
    except KeyError:
        raise ValueError(
            f"Unknown {kind} '{name}'. Known {kind}s: {', '.join(sorted(table))}."
        ) from None


def model_spec(name: str) -> ModelSpec:
    """The registry entry for `name`; an unknown name lists the known ones."""
    return lookup(_MODELS, "model", name)


def get_model(name: str, **kwargs) -> "keras.Model":
    """Builds the registered model `name` with the given keyword arguments.

    Also registers gradzoo's own Keras objects (zoo/layers.py), so a process
    that builds a zoo model can load any gradzoo model.keras.
    """
    from zoo import layers  # noqa: F401

    spec = model_spec(name)
    task_args = {k: kwargs.pop(k) for k in TASK_ARGUMENTS if k in kwargs}
    if task_args.get("output_per_step") and not spec.predicts_per_step:
        raise ValueError(
            f"Model '{name}' makes one prediction per example, not one per time step."
        )
    if not task_args.get("output_per_step", True):
        del task_args["output_per_step"]
    return spec.builder(**task_args, **spec.resolve(**kwargs))


def kernel_depth_axis(model: "keras.Model") -> list[tuple[int, str]]:
    """The depth axis of a model the zoo did not build: its kernels in order.

    Every trainable variable named `kernel` (Dense, Conv, a recurrent layer's
    input kernel), layer by layer in the order of `model.layers`, each its own
    position; a nested model contributes its kernels in its own order. The
    head's kernel is included: without the family's naming there is no telling
    it from a hidden layer's.
    """
    paths = [
        v.path
        for layer in model.layers
        for v in layer.trainable_weights
        if v.name == "kernel"
    ]
    # dict.fromkeys: a layer shared by a nested model and its parent once.
    return list(enumerate(dict.fromkeys(paths)))


def _check_axis(model: "keras.Model", axis, min_positions: int) -> None:
    where = f"Depth axis of model '{model.name}'"
    trainable = {v.path for v in model.trainable_variables}
    seen, last = set(), None
    for entry in axis:
        if (
            not isinstance(entry, Sequence)
            or len(entry) != 2
            or not isinstance(entry[0], int)
            or isinstance(entry[0], bool)
            or not isinstance(entry[1], str)
        ):
            raise ValueError(
                f"{where}: entries must be (position, path) pairs. Received: {entry!r}"
            )
        position, path = entry
        if path not in trainable:
            raise ValueError(
                f"{where}: {path!r} is not a trainable variable of the model."
            )
        if path in seen:
            raise ValueError(f"{where}: {path!r} is listed twice.")
        if last is not None and position < last:
            raise ValueError(
                f"{where}: positions must not decrease; {path!r} is at "
                f"{position} after {last}."
            )
        seen.add(path)
        last = position
    count = len({position for position, _ in axis})
    if count < min_positions:
        raise ValueError(
            f"{where} has {count} depth position(s); at least {min_positions} "
            "are needed."
        )


def depth_axis(
    model: "keras.Model", *, min_positions: int = 2
) -> tuple[tuple[int, str], ...]:
    """The (depth position, variable path) pairs of `model`'s depth axis.

    A zoo model (its `model.name` is a registered name) gets the axis its
    family declares with `register_model(..., depth_axis=...)`; any other
    model gets `kernel_depth_axis(model)`. The axis is checked: every path a
    trainable variable of the model, none twice, positions non-decreasing,
    and at least `min_positions` distinct positions (2, the two ends a
    first/last gradient ratio needs; the trainer records the axis of a
    one-layer model too, with `min_positions=1`).

    Raises:
      ValueError: the axis fails a check; one line naming the model.
    """
    spec = _MODELS.get(model.name)
    declare = spec.depth_axis if spec is not None else kernel_depth_axis
    axis = list(declare(model))
    _check_axis(model, axis, min_positions)
    return tuple((position, path) for position, path in axis)


def load_model(path: str, **kwargs) -> "keras.Model":
    """`keras.saving.load_model(path, **kwargs)` for any gradzoo model.keras.

    Registers gradzoo's own Keras objects (zoo/layers.py: `Scalar`,
    `RecurrentInitializer`, ...) first; a model holding one loads in a
    fresh process only after that. `import zoo.layers` before
    `keras.saving.load_model` does the same.
    """
    import keras

    from zoo import layers  # noqa: F401

    return keras.saving.load_model(path, **kwargs)
