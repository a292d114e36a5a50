"""``resnet`` family: kxk conv (stride) -> kxk conv, shortcut identity or 1x1 projection."""
from __future__ import annotations

import torch
import torch.nn as nn

from nas_kd.families.base import FAMILIES, Block, BlockFamily, Size
from nas_kd.flops import conv_bn_cost
from nas_kd.layers import ConvBN, DynamicConvBN


class ResBlock(nn.Module):
    """Residual block: kxk conv (stride) -> kxk conv, shortcut identity or 1x1 projection."""

    def __init__(self, b: Block) -> None:
        super().__init__()
        self.conv1 = ConvBN(b["in"], b["mid"], b["kernel"], b["stride"])
        self.conv2 = ConvBN(b["mid"], b["out"], b["kernel"], act=False)
        self.shortcut = ConvBN(b["in"], b["out"], 1, b["stride"], act=False) if b["shortcut"] == "projection" else nn.Identity()

    def zero_init_last_bn(self) -> None:
        """Start as the shortcut alone: zero the residual branch's last BatchNorm scale."""
        nn.init.zeros_(self.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class DynamicResBlock(nn.Module):
    """Elastic residual block (bottleneck width, in/out width; projection shortcut if the max block has one)."""

    def __init__(self, b: Block, kernel_sizes: list[int], kernel_transform: bool = False) -> None:
        super().__init__()
        self.conv1 = DynamicConvBN(b["in"], b["mid"], kernel_sizes, b["stride"], kernel_transform=kernel_transform)
        self.conv2 = DynamicConvBN(b["mid"], b["out"], kernel_sizes, act=False, kernel_transform=kernel_transform)
        self.shortcut = DynamicConvBN(b["in"], b["out"], (1,), b["stride"], act=False) if b["shortcut"] == "projection" else None

    def zero_init_last_bn(self) -> None:
        """Zero the residual branch's last BatchNorm scale."""
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor, b: Block) -> torch.Tensor:
        out = self.conv2(self.conv1(x, b["mid"], b["kernel"]), b["out"], b["kernel"])
        return torch.relu(out + (self.shortcut(x, b["out"]) if self.shortcut is not None else x))

    def inner_channels(self) -> tuple[list[DynamicConvBN], list[nn.Parameter]]:
        """The layers writing the block's inner (``mid``) channels, and the weights reading them (input dim 1)."""
        return [self.conv1], [self.conv2.conv.weight]

    def outer_channels(self) -> tuple[list[DynamicConvBN], list[nn.Parameter]]:
        """The layers writing the block's output channels, and the weights reading its input channels (dim 1)."""
        short = [self.shortcut] if self.shortcut is not None else []
        return [self.conv2, *short], [self.conv1.conv.weight, *(m.conv.weight for m in short)]

    def export_to(self, static: ResBlock, b: Block) -> None:
        self.conv1.export_to(static.conv1, b["in"], b["mid"], b["kernel"])
        self.conv2.export_to(static.conv2, b["mid"], b["out"], b["kernel"])
        if self.shortcut is not None:
            self.shortcut.export_to(static.shortcut, b["in"], b["out"], 1)


def cost(b: Block, size: Size) -> tuple[int, int, Size]:
    """(flops, params, output size) of a :class:`ResBlock` at input size ``size``."""
    parts = [conv_bn_cost(b["in"], b["mid"], b["kernel"], b["stride"], size)]
    parts.append(conv_bn_cost(b["mid"], b["out"], b["kernel"], 1, parts[0][2]))
    if b["shortcut"] == "projection":
        parts.append(conv_bn_cost(b["in"], b["out"], 1, b["stride"], size))
    return sum(p[0] for p in parts), sum(p[1] for p in parts), parts[1][2]


FAMILIES.register("resnet", example={"in": 8, "out": 16, "stride": 2, "kernel": 3, "mid": 12,
                                     "shortcut": "projection"})(BlockFamily(ResBlock, DynamicResBlock, cost))
