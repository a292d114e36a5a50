"""``cs_kd``: class-wise self-knowledge distillation (Yun et al., "Regularizing Class-wise Predictions via
Self-knowledge Distillation", CVPR 2020)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Positive


def same_class_partners(y: torch.Tensor) -> torch.Tensor:
    """For each sample, another sample of the batch with the same label (the next one of its class, cyclically);
    itself when it is its class's only sample."""
    order = torch.argsort(y, stable=True)
    ys = y[order]
    idx = torch.arange(len(y), device=y.device)
    start = torch.ones_like(ys, dtype=torch.bool)
    start[1:] = ys[1:] != ys[:-1]
    first = torch.where(start, idx, torch.zeros_like(idx)).cummax(0).values  # where each sample's class run starts
    following = torch.zeros_like(start)
    following[:-1] = ~start[1:]
    partner_sorted = torch.where(following, idx + 1, first)
    partner = torch.empty_like(idx)
    partner[order] = order[partner_sorted]
    return partner


@DISTILLERS.register("cs_kd")
class CSKD(Distiller):
    r"""The student's softened prediction on a sample is pulled towards its own (detached) prediction on another
    sample of the same class: :math:`T^2\,\mathrm{KL}(\sigma(f(x')/T)\,\|\,\sigma(f(x)/T))`, so that predictions
    are consistent within a class and the wrong classes' "dark knowledge" stays. Simplification: the paper's
    sampler draws a same-class partner for every sample; here the partner is another sample of the same class in
    the batch (:func:`same_class_partners`; a sample alone of its class in the batch adds no term). No teacher.
    The paper's settings: T 4, weight 1.

    Example: ``{name: cs_kd, weight: 1.0, temperature: 4}``.
    """

    needs_teacher = False
    logits_only = True

    def __init__(self, *, temperature: Positive = 4.0) -> None:
        super().__init__()
        self.temperature = float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        partner = same_class_partners(view.y)
        paired = partner != torch.arange(len(partner), device=partner.device)
        if not paired.any():
            return {"cs_kd": view.logits.sum() * 0.0}
        logits = view.logits[paired]
        return {"cs_kd": LF.kd_loss(logits, view.logits[partner[paired]].detach(), self.temperature)}
