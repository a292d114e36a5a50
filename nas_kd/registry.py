"""A small name -> factory registry used for losses, evaluators, strategies, spaces and models."""
from __future__ import annotations

import difflib
import inspect
import math
from typing import Any, Callable, Generic, TypeVar

from nas_kd.errors import OptionError, UnknownName

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

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering ``factory`` under ``name``; a duplicate name is an error."""

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = factory
            return factory

        return deco

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

    def check_options(self, name: str, options: dict[str, Any], where: str, *, given: tuple[str, ...] = ()) -> None:
        """Raise :class:`OptionError` naming ``where`` unless ``options`` fit ``name``'s constructor.

        Unknown options (with a close match), missing required ones and non-finite numbers are
        errors; ``given`` lists parameters the caller supplies itself (e.g. ``space``).
        """
        try:
            factory = self.get(name)
        except KeyError as e:
            raise OptionError(f"{where}: {e.args[0]}") from None
        params = {p.name: p for p in inspect.signature(factory).parameters.values()
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        allowed = [n for n in params if n not in given]
        for key, value in options.items():
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                listed = ", ".join(allowed) or "none"
                raise OptionError(f"{where}: {self.kind} {name!r} has no option {key!r}{hint}; options: {listed}")
            if isinstance(value, float) and not math.isfinite(value):
                raise OptionError(f"{where}.{key}: must be a finite number, got {value}")
        missing = [n for n in allowed if params[n].default is inspect.Parameter.empty and n not in options]
        if missing:
            raise OptionError(f"{where}: {self.kind} {name!r} needs option(s) {', '.join(missing)}")

    def build_checked(self, name: str, options: dict[str, Any], where: str, **given: Any) -> T:
        """:meth:`check_options`, then build; a ``ValueError`` of the constructor becomes an :class:`OptionError`."""
        self.check_options(name, options, where, given=tuple(given))
        try:
            return self.get(name)(**options, **given)
        except (ValueError, TypeError) as e:
            raise OptionError(f"{where}: {e}") from None

    def available(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
