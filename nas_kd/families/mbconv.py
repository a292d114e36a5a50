"""``mbconv`` family: inverted residual, 1x1 expand -> kxk depthwise (stride) -> 1x1 project."""
from __future__ import annotations

import torch
import torch.nn as nn

from nas_kd.families.base import FAMILIES, Block, BlockFamily, Size
from nas_kd.flops import conv_bn_cost
from nas_kd.layers import ConvBN, DynamicConvBN


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise (stride) -> 1x1 project (+ identity shortcut)."""

    def __init__(self, b: Block) -> None:
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


class DynamicMBConv(nn.Module):
    """Elastic inverted-residual block (kernel, expand ratio, in/out width)."""

    def __init__(self, b: Block, kernel_sizes: list[int], kernel_transform: bool = False) -> None:
        super().__init__()
        self.expand = DynamicConvBN(b["in"], b["mid"])
        self.depthwise = DynamicConvBN(b["mid"], b["mid"], kernel_sizes, b["stride"], depthwise=True,
                                       kernel_transform=kernel_transform)
        self.project = DynamicConvBN(b["mid"], b["out"], act=False)
        self.residual = b["shortcut"] == "identity"

    def zero_init_last_bn(self) -> None:
        """Zero the projection's BatchNorm scale when the max block has an identity shortcut."""
        if self.residual:
            nn.init.zeros_(self.project.bn.weight)

    def forward(self, x: torch.Tensor, b: Block) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x, b["mid"]), kernel=b["kernel"]), b["out"])
        return out + x if b["shortcut"] == "identity" else out

    def inner_channels(self) -> tuple[list[DynamicConvBN], list[nn.Parameter]]:
        """The layers writing the block's inner (``mid``) channels, and the weights reading them (input dim 1)."""
        return [self.expand, self.depthwise], [self.project.conv.weight]

    def outer_channels(self) -> tuple[list[DynamicConvBN], list[nn.Parameter]]:
        """The layers writing the block's output channels, and the weights reading its input channels (dim 1)."""
        return [self.project], [self.expand.conv.weight]

    def export_to(self, static: MBConv, b: Block) -> None:
        self.expand.export_to(static.expand, b["in"], b["mid"], 1)
        self.depthwise.export_to(static.depthwise, b["mid"], b["mid"], b["kernel"])
        self.project.export_to(static.project, b["mid"], b["out"], 1)


def cost(b: Block, size: Size) -> tuple[int, int, Size]:
    """(flops, params, output size) of an :class:`MBConv` at input size ``size``."""
    parts = [conv_bn_cost(b["in"], b["mid"], 1, 1, size)]
    parts.append(conv_bn_cost(b["mid"], b["mid"], b["kernel"], b["stride"], size, groups=b["mid"]))
    parts.append(conv_bn_cost(b["mid"], b["out"], 1, 1, parts[1][2]))
    return sum(p[0] for p in parts), sum(p[1] for p in parts), parts[1][2]


FAMILIES.register("mbconv", example={"in": 8, "out": 8, "stride": 1, "kernel": 5, "mid": 24,
                                     "shortcut": "identity"})(BlockFamily(MBConv, DynamicMBConv, cost))
