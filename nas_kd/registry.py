"""A small name -> factory registry used for losses, evaluators, strategies, spaces and models."""
from __future__ import annotations

import difflib
import importlib
import inspect
import math
import pkgutil
import typing
from typing import Any, Callable, Generic, TypeVar

from nas_kd.errors import OptionError, UnknownName, UserError
from nas_kd.typecheck import coerce

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps user-facing names to factories.

    Example:
        >>> LOSSES = Registry("loss")
        >>> @LOSSES.register("mse")
        ... def make_mse():
        ...     return "mse"
        >>> LOSSES.build("mse")
        'mse'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, Callable[..., T]] = {}
        self._examples: dict[str, dict[str, Any]] = {}

    def register(self, name: str, *, example: dict[str, Any] | None = None
                 ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; a duplicate name is an error.

        ``example``: small options the contract tests build it with (:meth:`example`), kept beside the component
        (timm keeps a model's ``default_cfgs`` in its file), so adding a component edits no test."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = factory
            self._examples[name] = dict(example or {})
            return factory

        return deco

    def example(self, name: str) -> dict[str, Any]:
        """The small options ``name`` declared for its contract tests (``{}``: its defaults are small enough)."""
        self.get(name)
        return dict(self._examples[name])

    def factories(self) -> list[Callable[..., T]]:
        """Every registered factory (class or function), in name order."""
        return [self._items[n] for n in self.available()]

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; an unknown name lists the valid ones."""
        if name not in self._items:
            close = difflib.get_close_matches(name, self._items, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.available())}")
        return self._items[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """Instantiate ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def check_options(self, name: str, options: dict[str, Any], where: str, *,
                      given: tuple[str, ...] = ()) -> dict[str, Any]:
        """``options`` checked against ``name``'s constructor (keyword arguments, their annotations); returns them
        coerced (an int where a float is expected becomes a float).

        Unknown options (with a close match), missing required ones and values of the wrong type or not finite
        raise :class:`OptionError` naming ``where``; ``given`` lists parameters the caller supplies itself (e.g.
        ``space``). Ranges are the constructor's to check (it raises :class:`~nas_kd.errors.UserError`)."""
        factory = self.get_for(name, where)
        target = factory.__init__ if inspect.isclass(factory) else factory
        params = {p.name: p for p in inspect.signature(factory).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        try:
            hints = typing.get_type_hints(target, include_extras=True)
        except (NameError, TypeError):  # an annotation this module cannot resolve: names are still checked
            hints = {}
        allowed = [n for n in params if n not in given]
        checked = {}
        for key, value in options.items():
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listed = ", ".join(allowed) or "none"
                raise OptionError(f"{where}: {self.kind} {name!r} has no option {key!r}{hint}; options: {listed}")
            checked[key] = coerce(value, hints.get(key, Any), f"{where}.{key}")
            if isinstance(checked[key], float) and not math.isfinite(checked[key]):
                raise OptionError(f"{where}.{key}: must be a finite number, got {value}")
        missing = [n for n in allowed if params[n].default is inspect.Parameter.empty and n not in options]
        if missing:
            raise OptionError(f"{where}: {self.kind} {name!r} needs option(s) {', '.join(missing)}")
        return checked

    def get_for(self, name: str, where: str) -> Callable[..., T]:
        """:meth:`get`, with an unknown name reported as an :class:`OptionError` naming ``where``."""
        try:
            return self.get(name)
        except UnknownName as e:
            raise OptionError(f"{where}: {e}") from None

    def build_checked(self, name: str, options: dict[str, Any], where: str, **given: Any) -> T:
        """:meth:`check_options`, then build. A :class:`~nas_kd.errors.UserError` the constructor raises (a value
        out of range) is re-raised naming ``where``; any other exception is a bug and keeps its traceback."""
        checked = self.check_options(name, options, where, given=tuple(given))
        try:
            return self.get(name)(**checked, **given)
        except UserError as e:
            raise OptionError(f"{where}: {e}") from None

    def available(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


def import_modules(package: str, path: list[str]) -> None:
    """Import every module of ``package`` (its ``__path__``), so a component registers by being a file in it: no
    list of modules to keep. Call it from the package's ``__init__`` after what its modules import from it."""
    for info in pkgutil.iter_modules(path):
        importlib.import_module(f"{package}.{info.name}")


def split_component(spec: Any, where: str, registry: Registry) -> tuple[str, dict[str, Any]]:
    """A recipe's component, a bare ``name`` or a mapping ``{name: ..., **options}``, as (name, options)."""
    if isinstance(spec, str):
        return spec, {}
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        return spec["name"], {k: v for k, v in spec.items() if k != "name"}
    raise OptionError(f"{where}: expected a {registry.kind} name or a mapping {{name: ..., options}} "
                      f"(names: {', '.join(registry.available())}), got {spec!r}")
