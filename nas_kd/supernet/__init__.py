"""The weight-sharing supernet of a search space, and its checkpoints.

``supernet.set_arch(arch)`` selects the active path (validated first: an invalid arch raises
``ValueError`` and leaves the active arch unchanged); it also works as a context manager
that restores the previous arch on exit. ``forward`` computes only the active path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas_kd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nas_kd.subnet import Spec, zero_init_residual
from nas_kd.supernet.blocks import DYNAMIC_BLOCKS, DynamicConvBN
from nas_kd.supernet.dynamic_layers import DynamicLinear

__all__ = ["Supernet", "save_supernet", "load_supernet"]


class DynamicStage(nn.Module):
    """The blocks of one stage; runs the first ``len(blocks)`` of them (elastic depth)."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.active: list[dict[str, Any]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, b in zip(self.blocks, self.active):
            x = block(x, b)
        return x


class _Restore:
    """Returned by ``set_arch``; as a context manager it restores the previous arch on exit."""

    def __init__(self, net: "Supernet", previous: dict[str, Any]) -> None:
        self.net, self.previous = net, previous

    def __enter__(self) -> "Supernet":
        return self.net

    def __exit__(self, *exc: Any) -> None:
        self.net.set_arch(self.previous)


class Supernet(nn.Module):
    """OFA-style weight-sharing network over a :class:`search_spaces.StagedSpace`.

    Modules are named ``stem, stage1..stageK, head`` like the teacher's and the exported
    subnet's, so features can be captured by the same names.
    """

    def __init__(self, space, num_classes: int = 10, in_channels: int = 1, kernel_transform: bool = False) -> None:
        super().__init__()
        self.space, self.num_classes, self.in_channels = space, num_classes, in_channels
        self.kernel_transform = kernel_transform
        full = space.spec(space.max_arch(), num_classes, in_channels)
        stem = full["stem"]
        self.stem = DynamicConvBN(in_channels, stem["out"], (stem["kernel"],), stem["stride"])
        block_cls = DYNAMIC_BLOCKS[full["family"]]
        self.stage_names = [f"stage{i}" for i in range(1, len(full["stages"]) + 1)]
        for name, blocks in zip(self.stage_names, full["stages"]):
            setattr(self, name, DynamicStage([block_cls(b, space.kernel_sizes, kernel_transform) for b in blocks]))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), DynamicLinear(full["head"]["in"], num_classes))
        self._arch: dict[str, Any] = {}
        self._spec: Spec = {}
        zero_init_residual(self)
        self.set_arch(space.max_arch())

    @property
    def arch(self) -> dict[str, Any]:
        """The active architecture (a copy)."""
        return dict(self._arch)

    @property
    def active_spec(self) -> Spec:
        """The static spec of the active architecture."""
        return self._spec

    def set_arch(self, arch: dict[str, Any]) -> _Restore:
        """Activate ``arch`` (validated first; on error nothing changes)."""
        arch = self.space.validate(arch)
        spec = self.space.spec(arch, self.num_classes, self.in_channels)
        previous = self._arch
        self._arch, self._spec = arch, spec
        for name, blocks in zip(self.stage_names, spec["stages"]):
            getattr(self, name).active = blocks
        return _Restore(self, previous)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.head(x)

    def meta(self) -> dict[str, Any]:
        """What :func:`load_supernet` needs to rebuild this supernet."""
        return {"space": self.space.name, "num_classes": self.num_classes, "in_channels": self.in_channels,
                "kernel_transform": self.kernel_transform}


def save_supernet(net: Supernet, path: str | Path, **extra: Any) -> None:
    """Save weights and construction metadata atomically."""
    save_checkpoint({"model": net.state_dict(), "supernet": net.meta(), **extra}, path)


def load_supernet(path: str | Path) -> Supernet:
    """Rebuild a supernet from a checkpoint written by :func:`save_supernet` or a supernet trainer."""
    import search_spaces

    ckpt = load_checkpoint(path)
    meta = ckpt.get("supernet")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: a nas_kd checkpoint, but not of a supernet (no 'supernet' metadata)")
    net = Supernet(search_spaces.get(meta["space"]), meta["num_classes"], meta["in_channels"],
                   kernel_transform=meta["kernel_transform"])
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the {meta['space']!r} supernet: {e}") from None
    return net
