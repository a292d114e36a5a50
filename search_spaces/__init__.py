"""Search spaces, chosen by name: ``search_spaces.get("mbv2")``.

To add a space, drop a module here that subclasses :class:`search_spaces.base.StagedSpace`
(or provides the same methods), registers it with ``SPACES.register("name")``, and import
it below.
"""
from __future__ import annotations

from functools import lru_cache

from search_spaces import mbv2, resnet  # noqa: F401  (register the built-in spaces)
from search_spaces.base import Arch, StageDef, StagedSpace
from search_spaces.registry import SPACES
from search_spaces.sampling import SAMPLERS

__all__ = ["Arch", "StagedSpace", "StageDef", "SPACES", "SAMPLERS", "get", "available"]


@lru_cache(maxsize=None)
def get(name: str) -> StagedSpace:
    """The search space registered as ``name`` (unknown names list the available ones)."""
    return SPACES.build(name)


def available() -> list[str]:
    """Names of the registered spaces."""
    return SPACES.available()
