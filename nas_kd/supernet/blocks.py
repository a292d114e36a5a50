"""Weight-sharing blocks: each runs one spec block (see :mod:`nas_kd.subnet`) and exports it."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas_kd.subnet import ConvBN, MBConv, ResBlock
from nas_kd.supernet.dynamic_layers import DynamicBatchNorm2d, DynamicConv2d


class DynamicConvBN(nn.Module):
    """DynamicConv2d + DynamicBatchNorm2d (+ ReLU), the elastic twin of :class:`nas_kd.subnet.ConvBN`."""

    def __init__(self, max_in: int, max_out: int, kernel_sizes=(1,), stride: int = 1, depthwise: bool = False,
                 act: bool = True, kernel_transform: bool = False) -> None:
        super().__init__()
        self.conv = DynamicConv2d(max_in, max_out, kernel_sizes, stride, depthwise, kernel_transform)
        self.bn = DynamicBatchNorm2d(max_out)
        self.act = act

    def forward(self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None) -> torch.Tensor:
        x = self.bn(self.conv(x, out_channels, kernel))
        return torch.relu(x) if self.act else x

    @torch.no_grad()
    def export_to(self, static: ConvBN, cin: int, cout: int, kernel: int) -> None:
        """Copy the active weights and BatchNorm state into ``static``."""
        static[0].weight.copy_(self.conv.active_weight(cin, cout, kernel))
        bn, dst = self.bn, static[1]
        dst.weight.copy_(bn.weight[:cout])
        dst.bias.copy_(bn.bias[:cout])
        dst.running_mean.copy_(bn.running_mean[:cout])
        dst.running_var.copy_(bn.running_var[:cout])
        dst.num_batches_tracked.copy_(bn.num_batches_tracked)


class DynamicMBConv(nn.Module):
    """Elastic inverted-residual block (kernel, expand ratio, in/out width)."""

    def __init__(self, b: dict[str, Any], kernel_sizes: list[int], kernel_transform: bool = False) -> None:
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

    def forward(self, x: torch.Tensor, b: dict[str, Any]) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x, b["mid"]), kernel=b["kernel"]), b["out"])
        return out + x if b["shortcut"] == "identity" else out

    def export_to(self, static: MBConv, b: dict[str, Any]) -> None:
        self.expand.export_to(static.expand, b["in"], b["mid"], 1)
        self.depthwise.export_to(static.depthwise, b["mid"], b["mid"], b["kernel"])
        self.project.export_to(static.project, b["mid"], b["out"], 1)


class DynamicResBlock(nn.Module):
    """Elastic residual block (bottleneck width, in/out width; projection shortcut if the max block has one)."""

    def __init__(self, b: dict[str, Any], kernel_sizes: list[int], kernel_transform: bool = False) -> None:
        super().__init__()
        self.conv1 = DynamicConvBN(b["in"], b["mid"], kernel_sizes, b["stride"], kernel_transform=kernel_transform)
        self.conv2 = DynamicConvBN(b["mid"], b["out"], kernel_sizes, act=False, kernel_transform=kernel_transform)
        self.shortcut = DynamicConvBN(b["in"], b["out"], (1,), b["stride"], act=False) if b["shortcut"] == "projection" else None

    def zero_init_last_bn(self) -> None:
        """Zero the residual branch's last BatchNorm scale."""
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor, b: dict[str, Any]) -> torch.Tensor:
        out = self.conv2(self.conv1(x, b["mid"], b["kernel"]), b["out"], b["kernel"])
        return torch.relu(out + (self.shortcut(x, b["out"]) if self.shortcut is not None else x))

    def export_to(self, static: ResBlock, b: dict[str, Any]) -> None:
        self.conv1.export_to(static.conv1, b["in"], b["mid"], b["kernel"])
        self.conv2.export_to(static.conv2, b["mid"], b["out"], b["kernel"])
        if self.shortcut is not None:
            self.shortcut.export_to(static.shortcut, b["in"], b["out"], 1)


DYNAMIC_BLOCKS = {"mbconv": DynamicMBConv, "resnet": DynamicResBlock}
