"""``reviewkd``: knowledge review (Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast1, Index


class ABF(nn.Module):
    """Attention-based fusion: the student stage's map (1x1 conv to ``mid`` channels) fused with the residual
    coming down from the deeper stages (upsampled) by two learned spatial attention maps, then a 3x3 conv to the
    teacher stage's width. Returns (the map to match, the residual for the next shallower stage)."""

    def __init__(self, cin: int, mid: int, cout: int, fuse: bool) -> None:
        super().__init__()
        self.reduce = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid))
        self.out = nn.Sequential(nn.Conv2d(mid, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))
        self.att = nn.Sequential(nn.Conv2d(2 * mid, 2, 1), nn.Sigmoid()) if fuse else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.att is not None:
            residual = F.interpolate(residual, size=x.shape[-2:], mode="nearest")
            z = self.att(torch.cat([x, residual], dim=1))
            x = x * z[:, :1] + residual * z[:, 1:]
        return self.out(x), x


def hcl(student: torch.Tensor, teacher: torch.Tensor, levels: tuple[int, ...] = (4, 2, 1)) -> torch.Tensor:
    """The hierarchical context loss: MSE of the maps, plus MSE of their average-pooled versions at ``levels``
    (each level below the map's size; weights halving at each level), normalised by the weights' sum."""
    s, t = LF.match_spatial(student, teacher)
    loss, weight, total = F.mse_loss(s, t), 1.0, 1.0
    for level in levels:
        if level >= s.shape[-1]:
            continue
        weight /= 2
        loss = loss + weight * F.mse_loss(F.adaptive_avg_pool2d(s, level), F.adaptive_avg_pool2d(t, level))
        total += weight
    return loss / total


@DISTILLERS.register("reviewkd")
class ReviewKD(FeaturePairs):
    r"""Each teacher stage is matched by a fusion of the student's same stage *and every deeper one*: the student's
    stages are reviewed from the deepest up, each fused with what came down from below by an attention-based
    fusion module (:class:`ABF`, learned, never exported), and each fused map is pulled to the teacher's stage by
    the hierarchical context loss (:func:`hcl`), summed over the stages. ``mid``: the fusion's width (the paper's
    mdistiller configs use 256 on ImageNet and the stage widths on CIFAR). Every stage pair by default.

    Example: ``{name: reviewkd, weight: 1.0, mid: 64}`` (mdistiller's CIFAR weight, beside CE 1).
    """

    key = "reviewkd"

    def __init__(self, *, mid: AtLeast1 = 64, pairs: Pairs | None = None, which: Which | None = None,
                 teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.mid = int(mid)

    def build(self, shapes) -> None:
        last = len(shapes) - 1  # the deepest pair starts the review: nothing to fuse with
        self.fusions = nn.ModuleList(ABF(s[1], self.mid, t[1], fuse=i != last) for i, (s, t) in enumerate(shapes))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t_feats = view.teacher_feats[self.teacher]
        residual, losses = None, []
        for i in reversed(range(len(self.pairs))):
            s, t = self.pairs[i]
            out, residual = self.fusions[i](view.feats[s].float(), residual)
            losses.append(hcl(out, t_feats[t].detach().float()))
        return {self.key: torch.stack(losses).sum()}
