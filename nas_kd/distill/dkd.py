"""``dkd``: decoupled knowledge distillation (Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.response import _OneTeacher
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, NonNegative, Positive


@DISTILLERS.register("dkd")
class DKD(_OneTeacher):
    r"""Classical KD split into its target-class part (TCKD: the binary target-vs-rest probabilities) and its
    non-target part (NCKD: the distribution over the other classes), reweighted independently:
    :math:`T^2(\alpha\,\mathrm{TCKD} + \beta\,\mathrm{NCKD})` (:func:`nas_kd.losses.functional.dkd_loss`); KD is
    the case where NCKD is weighted by the teacher's non-target mass. The paper's CIFAR settings are alpha 1,
    beta 8, T 4, with the loss warmed up linearly over the first 20 epochs; ``warmup_epochs`` does that here.

    Example: ``{name: dkd, weight: 1.0, alpha: 1, beta: 8, temperature: 4}``.
    """

    def __init__(self, *, alpha: NonNegative = 1.0, beta: NonNegative = 8.0, temperature: Positive = 4.0,
                 warmup_epochs: NonNegative = 0.0, teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        self.alpha, self.beta, self.temperature = float(alpha), float(beta), float(temperature)
        self.warmup_epochs = float(warmup_epochs)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        ramp = min(1.0, (view.epoch + 1) / self.warmup_epochs) if self.warmup_epochs else 1.0
        loss = LF.dkd_loss(view.logits, view.teacher_logits[self.teacher], view.y, self.alpha, self.beta,
                           self.temperature)
        return {"dkd": ramp * loss}
