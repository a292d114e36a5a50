"""Reference teacher: a small ResNet with named stages ``stem, stage1..stage4, head``.

Stage outputs for a 1x28x28 input (default widths): stem 32x28x28, stage1 32x28x28,
stage2 64x14x14, stage3 128x7x7, stage4 256x4x4. Blockwise supervision (DNA) pairs
student stage i with teacher stage i by these names.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from nas_kd.errors import UserError
from nas_kd.models.registry import MODELS


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (1x1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetTeacher(nn.Module):
    """ResNet-style CNN for small images; ``depths[i]`` basic blocks in stage i+1."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        widths: tuple[int, ...] = (32, 64, 128, 256),
        depths: tuple[int, ...] = (1, 1, 1, 1),
        strides: tuple[int, ...] = (1, 2, 2, 2),
    ) -> None:
        super().__init__()
        if not len(widths) == len(depths) == len(strides) == 4:
            raise UserError("widths, depths and strides need one entry per stage (4)")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        cin = widths[0]
        for i, (w, d, s) in enumerate(zip(widths, depths, strides), start=1):
            blocks = [BasicBlock(cin if j == 0 else w, w, s if j == 0 else 1) for j in range(d)]
            setattr(self, f"stage{i}", nn.Sequential(*blocks))
            cin = w
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"stage{i}")(x)
        return self.head(x)


@MODELS.register("resnet_fmnist", example={"widths": [8, 8, 8, 8]})
def resnet_fmnist(num_classes: int = 10, in_channels: int = 1, **kwargs) -> ResNetTeacher:
    """The reference Fashion-MNIST teacher (about 1.2 M parameters, 52 MFLOPs at 1x28x28)."""
    return ResNetTeacher(num_classes=num_classes, in_channels=in_channels, **kwargs)
