"""``dist``: distillation by Pearson correlation (Huang et al., "Knowledge Distillation from A Stronger Teacher",
NeurIPS 2022)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.response import _OneTeacher
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, NonNegative, Positive


@DISTILLERS.register("dist")
class DIST(_OneTeacher):
    r"""The student matches the teacher's predictions up to a positive linear map, per sample (inter-class
    relation) and per class across the batch (intra-class relation): :math:`T^2(\beta(1 - \rho(p^s_i, p^t_i)) +
    \gamma(1 - \rho(p^s_{:,c}, p^t_{:,c})))` with :math:`\rho` Pearson's correlation of the softened predictions
    (:func:`nas_kd.losses.functional.dist_loss`). Defaults: the paper's CIFAR settings (beta = gamma = 2, T = 4).

    Example: ``{name: dist, weight: 1.0, beta: 2, gamma: 2, temperature: 4}``.
    """

    pure_loss = staticmethod(LF.dist_loss)

    def __init__(self, *, beta: NonNegative = 2.0, gamma: NonNegative = 2.0, temperature: Positive = 4.0,
                 teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        self.beta, self.gamma, self.temperature = float(beta), float(gamma), float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {"dist": LF.dist_loss(view.logits, view.teacher_logits[self.teacher], self.beta, self.gamma,
                                     self.temperature)}
