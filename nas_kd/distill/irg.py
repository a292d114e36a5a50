"""``irg``: Instance Relationship Graph (Liu et al., "Knowledge Distillation via Instance Relationship Graph",
CVPR 2019)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.typecheck import Index, NonNegative


def edges(f: torch.Tensor) -> torch.Tensor:
    """The batch's Euclidean distance matrix of globally pooled instance features, divided by its mean."""
    e = f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)
    d = torch.cdist(e, e)
    return d / d.mean().clamp_min(1e-12)


def instance_moves(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """How far each instance's globally pooled feature moves from one layer to the next (Euclidean distance; the
    wider layer's channels average-pooled to the narrower width when they differ), divided by the batch's mean."""
    a, b = (f.mean((2, 3)) if f.ndim == 4 else f.flatten(1) for f in (f1, f2))
    width = min(a.shape[1], b.shape[1])
    a, b = (F.adaptive_avg_pool1d(x[:, None], width)[:, 0] if x.shape[1] != width else x for x in (a, b))
    d = (a - b).norm(dim=1)
    return d / d.mean().clamp_min(1e-12)


@DISTILLERS.register("irg")
class IRG(FeaturePairs):
    r"""The graph of a batch: vertices are the instances (their logits), edges the distances between instances
    at a layer (:func:`edges`, per stage pair, all by default), and the transformation of the graph from one layer
    to the next. The student matches the teacher on all three:
    ``vertex_weight`` MSE of the logits + ``edge_weight`` mean over layers of the edge matrices' MSE +
    ``transform_weight`` mean over successive layers of the MSE of the per-instance transformations.
    ``transform: distance`` (the paper's): an instance's transformation is the distance between its features at the
    two layers (:func:`instance_moves`; where the layers' widths differ, the wider one's channels are average-pooled
    to the narrower width, a parameter-free choice of ours: the paper compares layers of equal width).
    ``transform: edge-change``: the change of the instance's row of the edge matrix between the two layers (the
    simplified form this method first had). No learned parameters.

    Example: ``{name: irg, weight: 1.0}``.
    """

    key = "irg"
    needs_maps = False

    def __init__(self, *, vertex_weight: NonNegative = 0.1, edge_weight: NonNegative = 1.0,
                 transform_weight: NonNegative = 1.0, transform: Literal["distance", "edge-change"] = "distance",
                 pairs: Pairs | None = None, which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.vertex_weight, self.edge_weight, self.transform_weight = vertex_weight, edge_weight, transform_weight
        self.transform = transform

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t_feats = view.teacher_feats[self.teacher]
        es = [edges(view.feats[s].float()) for s, _ in self.pairs]
        et = [edges(t_feats[t].detach().float()) for _, t in self.pairs]
        edge = torch.stack([F.mse_loss(a, b) for a, b in zip(es, et)]).mean()
        if self.transform == "distance":
            fs = [view.feats[s].float() for s, _ in self.pairs]
            ft = [t_feats[t].detach().float() for _, t in self.pairs]
            moves = [(instance_moves(fs[i], fs[i + 1]), instance_moves(ft[i], ft[i + 1])) for i in range(len(fs) - 1)]
        else:
            moves = [((es[i + 1] - es[i]).norm(dim=1), (et[i + 1] - et[i]).norm(dim=1)) for i in range(len(es) - 1)]
        trans = torch.stack([F.mse_loss(a, b) for a, b in moves]).mean() if moves else edge.new_zeros(())
        vertex = F.mse_loss(view.logits.float(), view.teacher_logits[self.teacher].detach().float())
        return {"irg_vertex": self.vertex_weight * vertex, "irg_edge": self.edge_weight * edge,
                "irg_transform": self.transform_weight * trans}
