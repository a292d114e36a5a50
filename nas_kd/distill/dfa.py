"""``dfa``: Differentiable Feature Aggregation (Guan et al., "Differentiable Feature Aggregation Search for
Knowledge Distillation", ECCV 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Probe, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, Positive


@DISTILLERS.register("dfa")
class DFA(FeaturePairs):
    r"""Each teacher stage offers several feature maps, its candidates: the stage's output and the outputs of
    the BatchNorm layers inside it that have the output's shape. Their aggregate
    :math:`A = \sum_k \mathrm{softmax}(\alpha)_k F_k` (teacher maps detached) is what the student's stage matches,
    through a learned 1x1 conv + BatchNorm connector (MSE, as FitNets; all stage pairs by default). The
    architecture weights :math:`\alpha` (one vector per pair) are searched DARTS-style, first order: every
    training step first takes a validation batch, on which the same loss moves only :math:`\alpha` (plain SGD,
    ``alpha_lr``, stateless, so a resumed run is exact), while on training batches :math:`\alpha` is held fixed
    and the student and connectors learn. Connectors and :math:`\alpha` are never exported.

    Example: ``{name: dfa, weight: 100}`` (add ``kd`` beside it as ``kd+dfa``).
    """

    key = "dfa"
    uses_validation_batches = True

    def __init__(self, *, alpha_lr: Positive = 0.1, pairs: Pairs | None = None, which: Which | None = None,
                 teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.alpha_lr = float(alpha_lr)
        self.candidates: dict[str, list[str]] = {}

    def see_teachers(self, teachers: list[nn.Module]) -> None:
        model = teachers[self.teacher]
        for _, stage in self.pairs:
            inner = [n for n, m in model.named_modules() if n.startswith(f"{stage}.") and isinstance(m, nn.BatchNorm2d)]
            self.candidates[stage] = [stage, *inner]

    def teacher_modules(self, teacher: int) -> list[str]:
        return [c for _, t in self.pairs for c in self.candidates[t]] if teacher == self.teacher else []

    def bind(self, probe: Probe) -> None:
        shapes = probe.teacher_shapes[self.teacher]
        for _, t in self.pairs:  # only maps shaped like the stage's output can be summed with it
            self.candidates[t] = [c for c in self.candidates[t] if shapes[c] == shapes[t]]
        super().bind(probe)
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(len(self.candidates[t]))) for _, t in self.pairs)

    def build(self, shapes) -> None:
        self.connectors = nn.ModuleList(
            nn.Sequential(nn.Conv2d(s[1], t[1], 1, bias=False), nn.BatchNorm2d(t[1])) for s, t in shapes)

    def aggregate(self, i: int, feats: dict[str, torch.Tensor], alpha: torch.Tensor) -> torch.Tensor:
        maps = torch.stack([feats[c].detach().float() for c in self.candidates[self.pairs[i][1]]])
        return (torch.softmax(alpha, 0)[:, None, None, None, None] * maps).sum(0)

    def losses(self, view: View, student_grad: bool, alpha_grad: bool) -> torch.Tensor:
        t_feats = view.teacher_feats[self.teacher]
        out = []
        for i, (s, _) in enumerate(self.pairs):
            mapped = self.connectors[i](view.feats[s].float())
            mapped = mapped if student_grad else mapped.detach()
            alpha = self.alphas[i] if alpha_grad else self.alphas[i].detach()
            out.append(F.mse_loss(*LF.match_spatial(mapped, self.aggregate(i, t_feats, alpha))))
        return torch.stack(out).mean()

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {"dfa": self.losses(view, student_grad=True, alpha_grad=False)}

    def validation_step(self, view: View) -> None:
        loss = self.losses(view, student_grad=False, alpha_grad=True)
        grads = torch.autograd.grad(loss, list(self.alphas))
        with torch.no_grad():
            for a, g in zip(self.alphas, grads):
                a.sub_(self.alpha_lr * g)
