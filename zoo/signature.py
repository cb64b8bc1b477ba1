"""Keyword arguments read from a function's signature and docstring.

The one place that introspects a builder or loader: the model registry, the
task loader, RunConfig.resolved() and the trainer's flags all ask it which
arguments a function takes, their types, defaults, bounds and help, and use
`resolve` to fill defaults, refuse unknown arguments and check values.

Types come from annotations (`Annotated[int, AtLeast(1)]`,
`Literal["none", "batch"]`) or, without one, from the default's type; the
help text from the docstring's Google-style `Args:` section.

    >>> def f(*, depth: Annotated[int, AtLeast(1)] = 20): ...
    >>> resolve("Model 'f'", f, {"depth": 0})
    ValueError: depth must be >= 1. Received: depth=0

Tested by tests/trainers/test_config.py (types, choices, bounds) and
tests/zoo/test_models.py (builders' own messages).
"""

import dataclasses
import functools
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterable, Mapping

_FLOAT32_MAX = 3.4028234e38
_FLOAT32_TINY = 1.4e-45  # the smallest positive float32 (subnormal)


@dataclasses.dataclass(frozen=True)
class AtLeast:
    """Annotation metadata: the value must be >= bound."""

    bound: float


@dataclasses.dataclass(frozen=True)
class Positive:
    """Annotation metadata: the value must be > 0."""


@dataclasses.dataclass(frozen=True)
class Argument:
    """One keyword argument: what a flag or a config value must be."""

    name: str
    type: type  # int, float, bool or str
    default: object
    choices: tuple | None = None
    lower_bound: float | None = None
    positive: bool = False
    help: str = ""

    def check(self, value):
        """The value, converted (an int where a float is wanted), or ValueError."""
        name = self.name
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
                ok = math.isfinite(value) and abs(value) < _FLOAT32_MAX
        else:
            ok = isinstance(value, self.type)
        if not ok and self.type is float and isinstance(value, (int, float)):
            # A non-finite number: say what a finite one must also be.
            need = (
                "positive and finite"
                if self.positive
                else f">= {self.lower_bound:g} and finite"
                if self.lower_bound is not None
                else "a finite number"
            )
            raise ValueError(f"{name} must be {need}. Received: {name}={value!r}")
        if not ok:
            kind = {int: "an integer", float: "a finite number", bool: "true or false"}
            raise ValueError(
                f"{name} must be {kind.get(self.type, self.type.__name__)}. "
                f"Received: {name}={value!r}"
            )
        if self.choices is not None and value not in self.choices:
            known = ", ".join(map(str, self.choices))
            raise ValueError(
                f"Unknown {name} '{value}'. Known: {known}. Received: {name}={value!r}"
            )
        if self.positive and not value > 0:
            raise ValueError(
                f"{name} must be positive and finite. Received: {name}={value}"
            )
        if self.type is float and is_float32_zero(value):
            # Models compute in float32: 1e-50 would silently be 0.
            raise ValueError(
                f"{name} is 0 in float32, the precision it is used in. "
                f"Received: {name}={value}"
            )
        if self.lower_bound is not None and not value >= self.lower_bound:
            raise ValueError(
                f"{name} must be >= {self.lower_bound:g}. Received: {name}={value}"
            )
        return value


def is_float32_zero(value: float) -> bool:
    """A nonzero number that float32, the precision models compute in,
    holds as 0 (e.g. 1e-50): set, it would silently do nothing."""
    return value != 0 and abs(value) < _FLOAT32_TINY


def _docstring_args(fn) -> dict[str, str]:
    """{argument: help} from the docstring's Google-style Args: section."""
    doc = inspect.getdoc(fn) or ""
    match = re.search(r"^Args:\n((?:[ \t]+.*\n?|\n)*)", doc, re.MULTILINE)
    if not match:
        return {}
    helps, name = {}, None
    for line in match.group(1).splitlines():
        entry = re.match(r"^ {2,4}(\w+)(?: \(.*?\))?: ?(.*)$", line)
        if entry:
            name = entry.group(1)
            helps[name] = entry.group(2).strip()
        elif name and line.strip():
            helps[name] += " " + line.strip()
    return helps


def _describe(annotation, default) -> tuple[type, tuple | None, float | None, bool]:
    """(type, choices, lower bound, positive) from an annotation or default."""
    bound, positive = None, False
    if typing.get_origin(annotation) is typing.Annotated:
        annotation, *extras = typing.get_args(annotation)
        for extra in extras:
            if isinstance(extra, AtLeast):
                bound = extra.bound
            elif isinstance(extra, Positive) or extra is Positive:
                positive = True
    if typing.get_origin(annotation) is typing.Literal:
        choices = typing.get_args(annotation)
        return type(choices[0]), choices, bound, positive
    if isinstance(annotation, type) and annotation is not inspect.Parameter.empty:
        return annotation, None, bound, positive
    return type(default), None, bound, positive


def arguments(fn: Callable, *, exclude: Iterable[str] = ()) -> dict[str, Argument]:
    """The keyword arguments of `fn` that have defaults, minus `exclude`."""
    inner = fn.func if isinstance(fn, functools.partial) else fn
    helps = _docstring_args(inner)
    out = {}
    # The parameters' annotations as written (objects, not strings): the
    # return annotation, a quoted "keras.Model", is never evaluated, so
    # reading a builder's arguments imports no Keras.
    for name, p in inspect.signature(fn).parameters.items():
        if name in exclude or p.default is inspect.Parameter.empty:
            continue
        kind, choices, bound, positive = _describe(p.annotation, p.default)
        out[name] = Argument(
            name, kind, p.default, choices, bound, positive, helps.get(name, "")
        )
    return out


def resolve(
    owner: str,
    fn: Callable,
    kwargs: Mapping,
    *,
    exclude: Iterable[str] = (),
    prefix: str = "",
) -> dict:
    """`fn`'s defaults overridden by `kwargs`, every value checked.

    Args:
      owner: how errors name the function, e.g. "Model 'plain_mlp'".
      fn: the builder or loader.
      kwargs: the values given.
      exclude: arguments that are not the user's to set (task arguments).
      prefix: put before a bad value's message (e.g. "adding: ").

    Raises:
      ValueError: one line naming an unknown argument or a bad value.
    """
    known = arguments(fn, exclude=exclude)
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(
            f"{owner} takes no argument {', '.join(unknown)}. "
            f"It takes: {', '.join(sorted(known)) or 'no arguments'}."
        )
    resolved = {}
    for name, arg in known.items():
        try:
            resolved[name] = arg.check(kwargs[name]) if name in kwargs else arg.default
        except ValueError as e:
            raise ValueError(f"{prefix}{e}") from None
    return resolved
