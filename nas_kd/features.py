"""Capture intermediate features of any ``nn.Module`` by module name, with forward hooks."""
from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn as nn

from nas_kd.errors import UnknownName


@contextmanager
def capture(model: nn.Module, names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, ``feats[name]`` holds the latest output of each named submodule.

    Hooks are removed on exit, also after an error. A name that is not a submodule raises
    :class:`nas_kd.errors.UnknownName` (a ``KeyError``) listing close matches.

    Example:
        >>> with capture(teacher, ["stage1", "stage2"]) as feats:
        ...     teacher(x)
        ...     f1 = feats["stage1"]
    """
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, [n for n in modules if n], n=3)
            hint = f"; close matches: {', '.join(close)}" if close else ""
            raise UnknownName(f"{type(model).__name__} has no submodule {name!r}{hint}")
    feats: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: feats.__setitem__(name, out))
        for name in names
    ]
    try:
        yield feats
    finally:
        for h in handles:
            h.remove()
