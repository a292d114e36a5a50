"""A small name -> factory registry used for losses, evaluators, strategies, spaces and models."""
from __future__ import annotations

import difflib
from typing import Any, Callable, Generic, TypeVar

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
            raise KeyError(
                f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(self.available())}"
            )
        return self._items[name]

    def build(self, name: str, **kwargs: Any) -> T:
        """Instantiate ``name`` with keyword arguments."""
        return self.get(name)(**kwargs)

    def available(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
