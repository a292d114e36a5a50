"""Static (exported) networks, built from plain ``torch.nn`` layers and a JSON-serialisable spec.

A *spec* describes one concrete network of a block family::

    {"family": "mbconv" | "resnet", "in_channels": 1, "num_classes": 10, "image_size": 28,
     "stem": {"out": 16, "kernel": 3, "stride": 1},
     "stages": [[block, ...], ...],
     "head": {"in": 160}}

with ``block`` = ``{"in", "out", "stride", "kernel", "mid", "shortcut"}``; ``mid`` is the
expanded (MBConv) or bottleneck (residual block) width and ``shortcut`` is ``none``,
``identity`` or ``projection``. The search spaces map an architecture to a spec; the
supernet runs the spec's path, the export copies its weights into :class:`StaticNet`, and
:mod:`nas_kd.flops` prices it. Modules are named ``stem, stage1..stageK, head``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas_kd.errors import UserError

Spec = dict[str, Any]
BLOCK_KEYS = ("in", "out", "stride", "kernel", "mid", "shortcut")


class ConvBN(nn.Sequential):
    """Conv (no bias, 'same' padding) + BatchNorm (+ ReLU when ``act``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise (stride) -> 1x1 project (+ identity shortcut)."""

    def __init__(self, b: dict[str, Any]) -> None:
        super().__init__()
        self.expand = ConvBN(b["in"], b["mid"], 1)
        self.depthwise = ConvBN(b["mid"], b["mid"], b["kernel"], b["stride"], groups=b["mid"])
        self.project = ConvBN(b["mid"], b["out"], 1, act=False)
        self.residual = b["shortcut"] == "identity"

    def zero_init_last_bn(self) -> None:
        """Start as the identity: zero the last BatchNorm's scale when there is an identity shortcut."""
        if self.residual:
            nn.init.zeros_(self.project[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return out + x if self.residual else out


class ResBlock(nn.Module):
    """Residual block: kxk conv (stride) -> kxk conv, shortcut identity or 1x1 projection."""

    def __init__(self, b: dict[str, Any]) -> None:
        super().__init__()
        self.conv1 = ConvBN(b["in"], b["mid"], b["kernel"], b["stride"])
        self.conv2 = ConvBN(b["mid"], b["out"], b["kernel"], act=False)
        self.shortcut = ConvBN(b["in"], b["out"], 1, b["stride"], act=False) if b["shortcut"] == "projection" else nn.Identity()

    def zero_init_last_bn(self) -> None:
        """Start as the shortcut alone: zero the residual branch's last BatchNorm scale."""
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


BLOCKS = {"mbconv": MBConv, "resnet": ResBlock}


def zero_init_residual(model: nn.Module) -> nn.Module:
    """Zero the last BatchNorm scale of every residual block (static or elastic) in ``model``.

    Each block then starts as its shortcut, which BigNAS found necessary for training
    weight-sharing supernets; it speeds up stand-alone training of the same blocks too.
    """
    for m in model.modules():
        if hasattr(m, "zero_init_last_bn"):
            m.zero_init_last_bn()
    return model


class StaticNet(nn.Module):
    """A standalone network built from a spec: ``stem``, ``stage1..stageK``, ``head``."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        check_spec(spec)
        self.spec = spec
        stem = spec["stem"]
        self.stem = ConvBN(spec["in_channels"], stem["out"], stem["kernel"], stem["stride"])
        block = BLOCKS[spec["family"]]
        self.stage_names = []
        for i, blocks in enumerate(spec["stages"], start=1):
            setattr(self, f"stage{i}", nn.Sequential(*[block(b) for b in blocks]))
            self.stage_names.append(f"stage{i}")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec["head"]["in"], spec["num_classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.head(x)


def check_spec(spec: Spec) -> None:
    """Raise ``ValueError`` naming the problem if ``spec`` is not a well-formed network spec."""
    for key in ("family", "in_channels", "num_classes", "stem", "stages", "head"):
        if key not in spec:
            raise UserError(f"spec: missing key {key!r}")
    if spec["family"] not in BLOCKS:
        raise UserError(f"spec.family {spec['family']!r} is not one of {sorted(BLOCKS)}")
    cin = spec["stem"]["out"]
    for i, blocks in enumerate(spec["stages"], start=1):
        if not blocks:
            raise UserError(f"spec: stage{i} has no blocks")
        for j, b in enumerate(blocks, start=1):
            missing = [k for k in BLOCK_KEYS if k not in b]
            if missing:
                raise UserError(f"spec: stage{i} block{j} lacks {missing}")
            if b["in"] != cin:
                raise UserError(f"spec: stage{i} block{j} takes {b['in']} channels but receives {cin}")
            cin = b["out"]
    if spec["head"]["in"] != cin:
        raise UserError(f"spec: head takes {spec['head']['in']} channels but receives {cin}")
