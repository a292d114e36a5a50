"""Static (exported) networks, built from plain ``torch.nn`` layers and a JSON-serialisable spec.

A *spec* describes one concrete network of a block family (:mod:`nas_kd.families`)::

    {"family": "mbconv" | "resnet", "input_shape": [C, H, W], "num_classes": 10,
     "stem": {"out": 16, "kernel": 3, "stride": 1},
     "stages": [[block, ...], ...],
     "head": {"in": 160}}

with ``block`` = ``{"in", "out", "stride", "kernel", "mid", "shortcut"}``; ``mid`` is the
expanded (MBConv) or bottleneck (residual block) width and ``shortcut`` is ``none``,
``identity`` or ``projection``. The search spaces map an architecture to a spec; the
supernet runs the spec's path, the export copies its weights into :class:`StaticNet`, and
:func:`spec_cost` prices it. Modules are named ``stem, stage1..stageK, head``. Specs saved
before ``input_shape`` existed (``in_channels`` + square ``image_size``) still load.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas_kd.errors import UserError
from nas_kd.families import FAMILIES, Size
from nas_kd.flops import conv_bn_cost
from nas_kd.layers import ConvBN

Spec = dict[str, Any]
BLOCK_KEYS = ("in", "out", "stride", "kernel", "mid", "shortcut")


def shape_text(shape) -> str:
    """An input shape (C, H, W) as people write it in messages: ``3x32x32``."""
    return "x".join(map(str, shape))


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
        spec = check_spec(spec)
        self.spec = spec
        stem = spec["stem"]
        self.stem = ConvBN(spec["input_shape"][0], stem["out"], stem["kernel"], stem["stride"])
        block = FAMILIES.get(spec["family"]).static
        self.stage_names = []
        for i, blocks in enumerate(spec["stages"], start=1):
            setattr(self, f"stage{i}", nn.Sequential(*[block(b) for b in blocks]))
            self.stage_names.append(f"stage{i}")
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec["head"]["in"], spec["num_classes"]))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images this network was built (and priced) for."""
        return tuple(self.spec["input_shape"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.head(x)


def check_spec(spec: Spec) -> Spec:
    """``spec`` (a legacy one given ``input_shape``) if well formed; a :class:`UserError` naming the problem otherwise."""
    if "input_shape" not in spec and "in_channels" in spec:  # saved before input_shape existed: square images
        size = spec.get("image_size", 28)
        rest = {k: v for k, v in spec.items() if k not in ("in_channels", "image_size")}
        spec = {**rest, "input_shape": [spec["in_channels"], size, size]}
    for key in ("family", "input_shape", "num_classes", "stem", "stages", "head"):
        if key not in spec:
            raise UserError(f"spec: missing key {key!r}")
    if spec["family"] not in FAMILIES:
        raise UserError(f"spec.family {spec['family']!r} is not one of {FAMILIES.available()}")
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
    return spec


_TABLE: dict[tuple, tuple[int, int, Size]] = {}


def block_cost(block: dict[str, Any], size: Size, family: str) -> tuple[int, int, Size]:
    """(flops, params, output size) of one spec block at input size ``size`` = (h, w), from the per-block
    cost table: each distinct (block, size, family) is priced once by its family's exact cost."""
    key = (tuple(block[k] for k in BLOCK_KEYS), tuple(size), family)
    if key not in _TABLE:
        _TABLE[key] = FAMILIES.get(family).cost(block, tuple(size))
    return _TABLE[key]


def spec_cost(spec: Spec) -> tuple[int, int]:
    """(flops, params) of the network a spec describes, equal to fvcore / ``count_params`` on it.

    FLOPs follow fvcore's conventions for a 1 x C x H x W input (``spec["input_shape"]``):
    convs and the linear layer count multiply-adds, BatchNorm 2 per element, average pooling
    1 per input element; ReLU and additions are free.
    """
    spec = check_spec(spec)
    c, h, w = spec["input_shape"]
    stem = spec["stem"]
    flops, params, size = conv_bn_cost(c, stem["out"], stem["kernel"], stem["stride"], (h, w))
    for blocks in spec["stages"]:
        for b in blocks:
            f, p, size = block_cost(b, size, spec["family"])
            flops, params = flops + f, params + p
    cin, classes = spec["head"]["in"], spec["num_classes"]
    return flops + cin * size[0] * size[1] + cin * classes, params + cin * classes + classes
