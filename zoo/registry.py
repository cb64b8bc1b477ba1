"""The one model registry: a name -> builder table, filled by the family files.

A builder is a keyword-only function returning an ordinary `keras.Model` that
maps inputs to logits. Each entry also declares the input kinds it accepts
(so a trainer can refuse an RNN on an image task) and `tiny` keyword arguments
that make a test-sized model.

    >>> import zoo
    >>> zoo.get_model("residual_mlp", input_shape=(64,), num_outputs=10, depth=50)

Tested by tests/zoo/test_models.py.
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping

import keras

from zoo import signature

# Keyword arguments a builder takes from the task, not from the user. Every
# builder takes the first two; only sequence models take "output_per_step"
# (a prediction at every time step, as copy_memory needs, not one at the end).
TASK_ARGUMENTS = ("input_shape", "num_outputs", "output_per_step")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and what it needs to be built."""

    name: str
    builder: Callable[..., keras.Model]
    input_kinds: tuple[str, ...]
    tiny: Mapping[str, object]

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


def register_model(name: str, *, input_kinds: tuple[str, ...], tiny: Mapping):
    """Decorator that adds a builder to the registry under `name`."""

    def decorate(builder):
        if name in _MODELS:
            raise ValueError(f"Model '{name}' is registered twice.")
        _MODELS[name] = ModelSpec(name, builder, tuple(input_kinds), dict(tiny))
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


def get_model(name: str, **kwargs) -> keras.Model:
    """Builds the registered model `name` with the given keyword arguments."""
    spec = model_spec(name)
    task_args = {k: kwargs.pop(k) for k in TASK_ARGUMENTS if k in kwargs}
    if task_args.get("output_per_step") and not spec.predicts_per_step:
        raise ValueError(
            f"Model '{name}' makes one prediction per example, not one per time step."
        )
    if not task_args.get("output_per_step", True):
        del task_args["output_per_step"]
    return spec.builder(**task_args, **spec.resolve(**kwargs))
