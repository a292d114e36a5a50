"""``fsp``: the Flow of Solution Procedure (Yim et al., "A Gift from Knowledge Distillation", CVPR 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn

from nas_kd.distill.base import DISTILLERS, Probe, View
from nas_kd.distill.feature import StageChain
from nas_kd.losses import functional as LF


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """G = sum over positions of a b^T / (h w): (batch, channels of a, channels of b); the larger map is pooled."""
    a, b = LF.match_spatial(a, b)
    return torch.einsum("bihw,bjhw->bij", a, b) / (a.shape[-1] * a.shape[-2])


@DISTILLERS.register("fsp")
class FSP(StageChain):
    r"""The "flow" of a stage is the Gram matrix between the feature maps at its two ends,
    :math:`G = \sum_{h,w} F_{in} F_{out}^\top / (hw)`; the student's flows match the teacher's (mean squared
    difference, averaged over the flows). The ends are successive stages of each side (the deepest ``stages``
    of both, from the stem), so every stage gives one flow. The paper's student has the teacher's widths;
    here each student map first goes through a learned 1x1 connector to the teacher's width (never exported),
    and the larger map of a flow is average-pooled to the smaller's size.

    Example: ``{name: fsp, weight: 1.0}``.
    """

    def bind(self, probe: Probe) -> None:
        s, t = self.stage_shapes(probe)
        self.connectors = nn.ModuleList(nn.Conv2d(a[1], b[1], 1, bias=False) for a, b in zip(s, t))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        s = [c(view.feats[n].float()) for c, n in zip(self.connectors, self.s_stages)]
        t = [view.teacher_feats[self.teacher][n].detach().float() for n in self.t_stages]
        losses = [(fsp_matrix(s[i], s[i + 1]) - fsp_matrix(t[i], t[i + 1])).pow(2).mean() for i in range(len(s) - 1)]
        return {"fsp": torch.stack(losses).mean()}
