"""Layers of every network nas_kd builds: the static conv + BatchNorm of exported networks, and the
weight-sharing (elastic) layers of supernets, each holding the largest weights and running on a slice
of them (OFA-style).

Channels are elastic by taking the first k (input channels follow the incoming tensor),
kernels by taking the centre crop of the largest kernel, optionally passed through OFA's
learned kernel-transformation matrices (Cai et al., ICLR 2020). Only the active slice is
computed: no masking of full-size tensors.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


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


def _crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    start = (weight.shape[-1] - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


class DynamicConv2d(nn.Module):
    """Conv with elastic output channels, input channels and (odd) kernel size; no bias.

    ``depthwise=True`` makes a depthwise conv whose channel count follows the input.
    With ``kernel_transform`` a kernel k < max is ``crop_k(W') @ M_{k'->k}`` where W' is the
    next larger (transformed) kernel and M an identity-initialised k^2 x k^2 matrix, per layer.
    """

    def __init__(
        self,
        max_in: int,
        max_out: int,
        kernel_sizes: tuple[int, ...] | list[int] = (1,),
        stride: int = 1,
        depthwise: bool = False,
        kernel_transform: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_sizes = sorted(kernel_sizes)
        self.max_kernel = self.kernel_sizes[-1]
        self.stride, self.depthwise = stride, depthwise
        self.weight = nn.Parameter(torch.empty(max_out, 1 if depthwise else max_in, self.max_kernel, self.max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")
        self.transforms = nn.ParameterDict()
        if kernel_transform:
            for small, large in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]):
                self.transforms[f"{large}to{small}"] = nn.Parameter(torch.eye(small * small))

    def active_weight(self, in_channels: int, out_channels: int, kernel: int) -> torch.Tensor:
        """The weight the active (in, out, kernel) configuration uses, as a static conv would hold it."""
        if kernel not in self.kernel_sizes:
            raise ValueError(f"kernel {kernel} not in {self.kernel_sizes}")
        w = self.weight[:out_channels] if self.depthwise else self.weight[:out_channels, :in_channels]
        if not self.transforms:
            return _crop(w, kernel)
        size = self.max_kernel
        for small in reversed(self.kernel_sizes[:-1]):
            if small < kernel:
                break
            m = self.transforms[f"{size}to{small}"]
            w = (_crop(w, small).reshape(*w.shape[:2], small * small) @ m).reshape(*w.shape[:2], small, small)
            size = small
        return w

    def forward(self, x: torch.Tensor, out_channels: int | None = None, kernel: int | None = None) -> torch.Tensor:
        cin = x.shape[1]
        out = cin if self.depthwise else (out_channels or self.weight.shape[0])
        k = kernel or self.max_kernel
        return F.conv2d(x, self.active_weight(cin, out, k), None, self.stride, k // 2, 1, cin if self.depthwise else 1)


class DynamicBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first C channels of its statistics and affine parameters (C from the input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        if self.training:
            self.num_batches_tracked.add_(1)
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        return F.batch_norm(
            x, self.running_mean[:c], self.running_var[:c], self.weight[:c], self.bias[:c],
            self.training, factor, self.eps,
        )


class DynamicLinear(nn.Linear):
    """Linear layer over the first ``in_features`` of its input weights (input width from the tensor)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)


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
