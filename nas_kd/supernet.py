"""The weight-sharing supernet of a search space.

``supernet.set_arch(arch)`` selects the active path (validated first: an invalid arch raises
``ValueError`` and leaves the active arch unchanged); it also works as a context manager
that restores the previous arch on exit. ``forward`` computes only the active path.
Build one with ``space.build_supernet()``; save and load with :mod:`nas_kd.checkpoint`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas_kd.families import FAMILIES
from nas_kd.layers import DynamicConvBN, DynamicLinear
from nas_kd.subnet import Spec, zero_init_residual

__all__ = ["Supernet"]


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

    def __init__(self, space, kernel_transform: bool = False) -> None:
        super().__init__()
        self.space = space
        self.kernel_transform = kernel_transform
        full = space.spec(space.max_arch())
        stem = full["stem"]
        self.stem = DynamicConvBN(space.input_shape[0], stem["out"], (stem["kernel"],), stem["stride"])
        block_cls = FAMILIES.get(full["family"]).dynamic
        self.stage_names = [f"stage{i}" for i in range(1, len(full["stages"]) + 1)]
        for name, blocks in zip(self.stage_names, full["stages"]):
            setattr(self, name, DynamicStage([block_cls(b, space.kernel_sizes, kernel_transform) for b in blocks]))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), DynamicLinear(full["head"]["in"], space.num_classes))
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
        spec = self.space.spec(arch)
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

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this supernet is built for."""
        return self.space.input_shape

    @property
    def num_classes(self) -> int:
        return self.space.num_classes

    def meta(self) -> dict[str, Any]:
        """What :func:`nas_kd.checkpoint.load_supernet` needs to rebuild this supernet."""
        return {"space": self.space.name, "input_shape": list(self.space.input_shape), "num_classes": self.space.num_classes,
                "in_channels": self.space.input_shape[0], "kernel_transform": self.kernel_transform}

