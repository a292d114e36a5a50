"""``frskd``: Refine Myself by Teaching Myself (Ji et al., "Feature Refinement via Self-Knowledge Distillation",
CVPR 2021)."""
from __future__ import annotations

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
    bring every stage to ``width`` channels, a top-down pass (upsampled deeper map added, 3x3 conv) and a
    bottom-up pass (pooled shallower map added, 3x3 conv) give the refined maps :math:`R_i` (a BiFPN-like
    aggregation with plain sums: the paper's learned fusion weights are left out), and a linear classifier on the
    pooled deepest refined map gives the self-teacher's logits :math:`z_T`. Terms:
    ``frskd_ce`` = CE(:math:`z_T`, y) trains the self-teacher; ``frskd_feat`` = ``beta`` x mean over stages of the
    squared difference of the channel-pooled (attention) maps of the student's stage and its refined map
    (detached); ``frskd_kd`` = ``alpha`` x :math:`T^2` KL(:math:`\sigma(z_T/T)` detached || student). The
    self-teacher trains with the student and is never exported.

    Example: ``{name: frskd, weight: 1.0, alpha: 1.0, beta: 100, temperature: 4}``.
    """

    def __init__(self, *, alpha: NonNegative = 1.0, beta: NonNegative = 100.0, temperature: Positive = 4.0,
                 width: AtLeast1 = 32, stages: list[str] | None = None) -> None:
        super().__init__()
        self.alpha, self.beta, self.temperature, self.width, self.stages = alpha, beta, temperature, width, stages

    def bind(self, probe: Probe) -> None:
        shapes = self.stage_shapes(probe)
        w = self.width
        self.lateral = nn.ModuleList(nn.Conv2d(s[1], w, 1, bias=False) for s in shapes)
        self.top_down = nn.ModuleList(_conv(w) for _ in shapes)
        self.bottom_up = nn.ModuleList(_conv(w) for _ in shapes)
        self.classifier = nn.Linear(w, probe.num_classes)

    def refine(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        lat = [f(x) for f, x in zip(self.lateral, feats)]
        td = [None] * len(lat)
        for i in reversed(range(len(lat))):
            deeper = 0 if i == len(lat) - 1 else F.interpolate(td[i + 1], size=lat[i].shape[-2:], mode="nearest")
            td[i] = self.top_down[i](lat[i] + deeper)
        out = []
        for i, x in enumerate(td):
            shallower = 0 if i == 0 else F.adaptive_avg_pool2d(out[i - 1], x.shape[-2:])
            out.append(self.bottom_up[i](x + shallower))
        return out

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        feats = [view.feats[s].float() for s in self.stages]
        refined = self.refine([f.detach() for f in feats])
        z_t = self.classifier(refined[-1].mean((2, 3)))
        feat = torch.stack([(LF.attention_map(f) - LF.attention_map(r.detach())).pow(2).mean()
                            for f, r in zip(feats, refined)]).mean()
        return {"frskd_ce": F.cross_entropy(z_t, view.y), "frskd_feat": self.beta * feat,
                "frskd_kd": self.alpha * LF.kd_loss(view.logits, z_t.detach(), self.temperature)}
