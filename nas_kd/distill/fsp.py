"""``fsp``: the Flow of Solution Procedure (Yim et al., "A Gift from Knowledge Distillation", CVPR 2017)."""
from __future__ import annotations

import torch
import torch.nn as nn

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index


def fsp_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """G = sum over positions of a b^T / (h w): (batch, channels of a, channels of b); the larger map is pooled."""
    a, b = LF.match_spatial(a, b)
    return torch.einsum("bihw,bjhw->bij", a, b) / (a.shape[-1] * a.shape[-2])


@DISTILLERS.register("fsp")
class FSP(Distiller):
    r"""The "flow" of a stage is the Gram matrix between the feature maps at its two ends,
    :math:`G = \sum_{h,w} F_{in} F_{out}^\top / (hw)`; the student's flows match the teacher's (mean squared
    difference, averaged over the flows). The ends are successive stages of each side (the deepest ``stages``
    of both, from the stem), so every stage gives one flow. The paper's student has the teacher's widths;
    here each student map first goes through a learned 1x1 connector to the teacher's width (never exported),
    and the larger map of a flow is average-pooled to the smaller's size.

    Example: ``{name: fsp, weight: 1.0}``.
    """

    def __init__(self, *, teacher: Index = 0) -> None:
        super().__init__()
        self.teacher = teacher

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        if self.teacher >= num_teachers:
            raise self.error(f"teacher={self.teacher} but the recipe gives {num_teachers} teacher(s)")
        t_stages = teacher_stages[self.teacher]
        n = min(len(student_stages or []), len(t_stages or []))
        if n < 2:
            raise self.error("needs at least two stages on both sides (a flow has two ends)")
        self.s_stages, self.t_stages = list(student_stages[-n:]), list(t_stages[-n:])

    def student_modules(self) -> list[str]:
        return self.s_stages

    def teacher_modules(self, teacher: int) -> list[str]:
        return self.t_stages if teacher == self.teacher else []

    def bind(self, probe: Probe) -> None:
        s = [probe.student_shapes[n] for n in self.s_stages]
        t = [probe.teacher_shapes[self.teacher][n] for n in self.t_stages]
        if any(len(x) != 4 for x in s + t):
            raise self.error("every stage must output a 4-d feature map")
        self.connectors = nn.ModuleList(nn.Conv2d(a[1], b[1], 1, bias=False) for a, b in zip(s, t))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        s = [c(view.feats[n].float()) for c, n in zip(self.connectors, self.s_stages)]
        t = [view.teacher_feats[self.teacher][n].detach().float() for n in self.t_stages]
        losses = [(fsp_matrix(s[i], s[i + 1]) - fsp_matrix(t[i], t[i + 1])).pow(2).mean() for i in range(len(s) - 1)]
        return {"fsp": torch.stack(losses).mean()}
