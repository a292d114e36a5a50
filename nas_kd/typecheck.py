"""Check a value read from a recipe against a type annotation, and a number against its allowed range (a
:class:`Range` in a dataclass field's metadata, or in ``Annotated[int, Range(1)]`` of a component's signature);
and the number types of command-line options (:func:`option_number`), shared by the CLI and the benchmarks.

One mechanism for the recipe's own keys (:mod:`nas_kd.config`) and for the keyword-only options of every
registered component (:meth:`nas_kd.registry.Registry.check_options`): an error names the key path and
says what was expected.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass
from typing import Any

from nas_kd.errors import OptionError, UserError


@dataclass(frozen=True)
class Range:
    """Allowed numbers: ``low`` (excluded when ``low_open``) up to ``high`` (excluded when ``high_open``); ``None``:
    unbounded on that side."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, value: Any, where: str, error: type[UserError] = OptionError) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        lo, hi = self.low, self.high
        if (lo is not None and (value <= lo if self.low_open else value < lo)) or \
                (hi is not None and (value >= hi if self.high_open else value > hi)):
            low = "" if lo is None else f"{'>' if self.low_open else '>='} {lo}"
            high = "" if hi is None else f"{'<' if self.high_open else '<='} {hi}"
            raise error(f"{where}: must be {' and '.join(x for x in (low, high) if x)}, got {value!r}")


@dataclass(frozen=True)
class NonEmpty:
    """``Annotated`` metadata: a list that must hold at least one item."""

    def check(self, value: Any, where: str, error: type[UserError] = OptionError) -> None:
        if isinstance(value, (list, tuple)) and not value:
            raise error(f"{where}: must not be empty")


@dataclass(frozen=True)
class Check:
    """``Annotated`` metadata: a rule on the whole value that no range says (``says``: what it must be)."""

    test: Any
    says: str

    def check(self, value: Any, where: str, error: type[UserError] = OptionError) -> None:
        if value is not None and not self.test(value):
            raise error(f"{where}: must {self.says}, got {value!r}")


AtLeast1 = typing.Annotated[int, Range(1)]  # a count
AtLeast2 = typing.Annotated[int, Range(2)]
Index = typing.Annotated[int, Range(0)]  # a position (teacher number, epoch)
Probability = typing.Annotated[float, Range(0, 1)]
Positive = typing.Annotated[float, Range(0, low_open=True)]  # a temperature, a learning rate
NonNegative = typing.Annotated[float, Range(0)]  # a weight


def ge(low: float, high: float | None = None) -> dict[str, Range]:
    """Dataclass field metadata: the value is >= ``low`` (and <= ``high``)."""
    return {"range": Range(low, high)}


def gt(low: float, high: float | None = None) -> dict[str, Range]:
    """Dataclass field metadata: the value is > ``low`` (and <= ``high``)."""
    return {"range": Range(low, high, low_open=True)}


def type_name(tp: Any) -> str:
    """How an error names the annotation ``tp`` (``int or None``, ``one of 'a', 'b'``, ``list``)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(tp)))
    if tp is type(None):
        return "None"
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {type_name(args[0])}" if origin is list and args else "a list"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def coerce(value: Any, tp: Any, where: str, error: type[UserError] = OptionError) -> Any:
    """``value`` checked against the annotation ``tp`` (ints are accepted where floats are expected, a
    dataclass is built from a mapping by :func:`build_dataclass`); raises ``error`` naming ``where``."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:  # Annotated[int, Range(1)]: the type, then each Range of its metadata
        base, *extras = typing.get_args(tp)
        value = coerce(value, base, where, error)
        for extra in extras:
            if isinstance(extra, (Range, NonEmpty, Check)):
                extra.check(value, where, error)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        for arg in options:
            try:
                return coerce(value, arg, where, error)
            except UserError as e:
                if len(options) == 1 or "must " in str(e):  # the type fits but the value does not: say why
                    raise
        raise error(f"{where}: expected {type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(f"{where}: {value!r} is not one of {', '.join(map(str, allowed))}{hint}")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, where, error)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise error(f"{where}: expected {len(args)} items, got {value!r}")
            return tuple(coerce(v, a, f"{where}[{i}]", error) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [coerce(v, item, f"{where}[{i}]", error) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise error(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any or not isinstance(tp, type):
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 5e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise error(f"{where}: expected {type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise error(f"{where}: must be a finite number, got {value!r}")
    return value


def build_dataclass(cls: type, data: dict, where: str, error: type[UserError] = OptionError) -> Any:
    """An instance of the dataclass ``cls`` from the mapping ``data``: unknown keys (with a close match), wrong
    types, numbers outside a field's ``range`` metadata and missing required keys raise ``error``."""
    hints = typing.get_type_hints(cls, include_extras=False)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise error(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            kwargs[f.name] = coerce(data[f.name], hints[f.name], sub, error)
            if "range" in f.metadata:
                f.metadata["range"].check(kwargs[f.name], sub, error)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{where or 'recipe'}: missing required key {f.name!r}")
    return cls(**kwargs)


def option_number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False):
    """A command-line option's type (argparse): a finite ``kind`` within [low, high] (``low_open``: low excluded)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
                or (high is not None and value > high):
            bounds = [f"{'>' if low_open else '>='} {low}"] if low is not None else []
            bounds += [f"<= {high}"] if high is not None else []
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {' and '.join(bounds)}")
        return value

    return parse


POSITIVE = option_number(float, 0, low_open=True)
NON_NEGATIVE = option_number(float, 0)
FRACTION = option_number(float, 0, 1, low_open=True)
COUNT = option_number(int, 1)
NATURAL = option_number(int, 0)
