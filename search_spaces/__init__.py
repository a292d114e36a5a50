"""Search spaces, chosen by name: ``search_spaces.get("mbv2")``, or for other data
``search_spaces.get("mbv2", input_shape=(3, 32, 32), num_classes=100)``.

To add a space, drop a module here that subclasses :class:`search_spaces.base.StagedSpace`
(or provides the same methods), registers it with ``SPACES.register("name")``: every module here is imported automatically.
"""
from __future__ import annotations

from functools import lru_cache

from nas_kd.registry import import_modules
from search_spaces.base import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, Arch, StageDef, StagedSpace, check_shape
from search_spaces.registry import SPACES
from search_spaces.sampling import SAMPLERS

import_modules(__name__, __path__)  # every module registers its spaces and samplers

__all__ = ["Arch", "StagedSpace", "StageDef", "SPACES", "SAMPLERS", "get", "from_meta", "available"]


def get(name: str, input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
        num_classes: int = DEFAULT_NUM_CLASSES) -> StagedSpace:
    """The search space registered as ``name`` (unknown names list the available ones), for inputs of
    ``input_shape`` (C, H, W) and ``num_classes`` classes: its FLOPs, parameters and supernets are for them."""
    shape, classes = check_shape(tuple(input_shape) if isinstance(input_shape, list) else input_shape, num_classes)
    return _get(name, shape, classes)


def from_meta(meta: dict) -> StagedSpace:
    """The space a saved record names: ``space``, ``input_shape`` and ``num_classes`` keys (records written
    before shapes were saved are 1 x 28 x 28 with ``in_channels`` channels, 10 classes)."""
    shape = meta.get("input_shape") or (meta.get("in_channels", 1), *DEFAULT_INPUT_SHAPE[1:])
    return get(meta["space"], tuple(shape), meta.get("num_classes", DEFAULT_NUM_CLASSES))


@lru_cache(maxsize=None)
def _get(name: str, input_shape: tuple[int, int, int], num_classes: int) -> StagedSpace:
    return SPACES.build(name, input_shape=input_shape, num_classes=num_classes)


def available() -> list[str]:
    """Names of the registered spaces."""
    return SPACES.available()
