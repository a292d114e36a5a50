"""``tf_kd``: teacher-free KD, a virtual teacher (Yuan et al., "Revisiting Knowledge Distillation via Label
Smoothing Regularization", CVPR 2020)."""
from __future__ import annotations

import math
from typing import Annotated

import torch

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Positive, Range


@DISTILLERS.register("tf_kd")
class TfKD(Distiller):
    r"""KD viewed as learned label smoothing, without a teacher (Tf-KD\ :sub:`reg`): the student is distilled from a
    virtual teacher that puts probability ``correct`` on the label and spreads the rest evenly, softened by the
    temperature: :math:`T^2\,\mathrm{KL}(\mathrm{softmax}(\log p^d / T)\,\|\,\mathrm{softmax}(s / T))`.
    Simplification: the paper softens the virtual distribution as ``softmax(p^d / T)`` (its probabilities taken as
    logits); here its log-probabilities are, so that T = 1 gives the virtual distribution itself. The paper's
    other variant (Tf-KD\ :sub:`self`, a pre-trained copy of the student as its teacher) is ``born_again``.

    Example: ``{name: tf_kd, weight: 0.5, correct: 0.9, temperature: 4}``.
    """

    needs_teacher = False
    logits_only = True

    def __init__(self, *, correct: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.9,
                 temperature: Positive = 4.0) -> None:
        super().__init__()
        self.correct, self.temperature = float(correct), float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        n, c = view.logits.shape
        virtual = torch.full((n, c), math.log((1 - self.correct) / (c - 1)), device=view.logits.device)
        virtual.scatter_(1, view.y[:, None], math.log(self.correct))
        return {"tf_kd": LF.kd_loss(view.logits, virtual, self.temperature)}
