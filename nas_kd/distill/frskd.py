"""``frskd``: Refine Myself by Teaching Myself (Ji et al., "Feature Refinement via Self-Knowledge Distillation",
CVPR 2021)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Probe, View
from nas_kd.distill.self_distill import _OwnStages
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast1, NonNegative, Positive


def _conv(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU())


@DISTILLERS.register("frskd")
class FRSKD(_OwnStages):
    r"""A self-teacher built on the student's own stage features refines them and classifies: lateral 1x1 convs
    bring every stage to ``width`` channels, a top-down pass (upsampled deeper map fused in, 3x3 conv) and a
    bottom-up pass (pooled shallower map fused in, 3x3 conv) give the refined maps :math:`R_i` (BiFPN's
    aggregation), and a linear classifier on the pooled deepest refined map gives the self-teacher's logits
    :math:`z_T`. ``fusion: learned`` (the paper's) fuses each node's inputs with BiFPN's fast normalised fusion,
    :math:`\sum_i w_i x_i / (\epsilon + \sum_i w_i)` with learned :math:`w_i \ge 0` (ReLU of a parameter, one per
    input and node); ``fusion: sum`` adds them (the simplified form this method first had). Terms:
    ``frskd_ce`` = CE(:math:`z_T`, y) trains the self-teacher; ``frskd_feat`` = ``beta`` x mean over stages of the
    squared difference of the channel-pooled (attention) maps of the student's stage and its refined map
    (detached); ``frskd_kd`` = ``alpha`` x :math:`T^2` KL(:math:`\sigma(z_T/T)` detached || student). The
    self-teacher trains with the student and is never exported.

    Example: ``{name: frskd, weight: 1.0, alpha: 1.0, beta: 100, temperature: 4}``.
    """

    def __init__(self, *, alpha: NonNegative = 1.0, beta: NonNegative = 100.0, temperature: Positive = 4.0,
                 width: AtLeast1 = 32, fusion: Literal["learned", "sum"] = "learned",
                 stages: list[str] | None = None) -> None:
        super().__init__()
        self.alpha, self.beta, self.temperature, self.width, self.stages = alpha, beta, temperature, width, stages
        self.fusion = fusion

    def bind(self, probe: Probe) -> None:
        shapes = self.stage_shapes(probe)
        w = self.width
        self.lateral = nn.ModuleList(nn.Conv2d(s[1], w, 1, bias=False) for s in shapes)
        self.top_down = nn.ModuleList(_conv(w) for _ in shapes)
        self.bottom_up = nn.ModuleList(_conv(w) for _ in shapes)
        self.classifier = nn.Linear(w, probe.num_classes)
        if self.fusion == "learned":  # node i of each pass fuses two inputs (one at the pass's first node)
            self.top_down_weights = nn.Parameter(torch.ones(len(shapes), 2))
            self.bottom_up_weights = nn.Parameter(torch.ones(len(shapes), 2))

    def fuse(self, inputs: list[torch.Tensor], weights: torch.Tensor | None) -> torch.Tensor:
        """The inputs summed (``fusion: sum``) or by fast normalised fusion with ``weights``' ReLU."""
        if weights is None:
            return sum(inputs)
        w = F.relu(weights[: len(inputs)])
        return sum(wi * x for wi, x in zip(w, inputs)) / (w.sum() + 1e-4)

    def refine(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        learned = self.fusion == "learned"
        lat = [f(x) for f, x in zip(self.lateral, feats)]
        td = [None] * len(lat)
        for i in reversed(range(len(lat))):
            deeper = [] if i == len(lat) - 1 else [F.interpolate(td[i + 1], size=lat[i].shape[-2:], mode="nearest")]
            td[i] = self.top_down[i](self.fuse([lat[i], *deeper], self.top_down_weights[i] if learned else None))
        out = []
        for i, x in enumerate(td):
            shallower = [] if i == 0 else [F.adaptive_avg_pool2d(out[i - 1], x.shape[-2:])]
            out.append(self.bottom_up[i](self.fuse([x, *shallower], self.bottom_up_weights[i] if learned else None)))
        return out

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        feats = [view.feats[s].float() for s in self.stages]
        refined = self.refine([f.detach() for f in feats])
        z_t = self.classifier(refined[-1].mean((2, 3)))
        feat = torch.stack([(LF.attention_map(f) - LF.attention_map(r.detach())).pow(2).mean()
                            for f, r in zip(feats, refined)]).mean()
        return {"frskd_ce": F.cross_entropy(z_t, view.y), "frskd_feat": self.beta * feat,
                "frskd_kd": self.alpha * LF.kd_loss(view.logits, z_t.detach(), self.temperature)}
