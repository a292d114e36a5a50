"""``logit_std``: KD on standardised logits (Sun et al., "Logit Standardization in Knowledge Distillation", CVPR
2024)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.response import _OneTeacher
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, Positive


@DISTILLERS.register("logit_std")
class LogitStd(_OneTeacher):
    r"""Hinton KD after z-scoring each sample's logits (minus their mean, over their standard deviation) on both
    sides, with a base temperature: the temperature then acts per sample through the logits' own spread, and a
    smaller student need not match the teacher's logit range, only its relations
    (:func:`nas_kd.losses.functional.logit_std_kd`). The paper's base temperature is 2.

    Example: ``{name: logit_std, weight: 0.9, temperature: 2}``.
    """

    pure_loss = staticmethod(LF.logit_std_kd)

    def __init__(self, *, temperature: Positive = 2.0, teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        self.temperature = float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {"logit_std": LF.logit_std_kd(view.logits, view.teacher_logits[self.teacher], self.temperature)}
