"""``adversarial``: adversarial knowledge distillation (Xu, Hsu & Huang, "Training Student Networks for Acceleration
with Conditional Adversarial Networks", BMVC 2018; Wang et al., KDGAN, NeurIPS 2018)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import functional_call

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.typecheck import AtLeast1, Index, Positive


@DISTILLERS.register("adversarial")
class Adversarial(Distiller):
    r"""A small discriminator (MLP: classes -> ``hidden`` -> ``hidden`` -> 1, LeakyReLU) learns to tell the
    teacher's softened outputs :math:`\sigma(t/T)` from the student's; the student learns to fool it.

    Two terms: ``adv_d`` = BCE(D(teacher), 1) + BCE(D(student, detached), 0) trains only the discriminator;
    ``adv_g`` = BCE(D(student), 1), with the discriminator's parameters detached, trains only the student. Both
    take the term's weight; the discriminator trains with the student's optimiser, is checkpointed with it, and is
    never exported. Combine with ``kd`` as the papers do (e.g. ``[{name: kd, weight: 0.9}, {name: adversarial,
    weight: 0.1}]``).

    Example: ``{name: adversarial, weight: 0.1, temperature: 1.0}``.
    """

    def __init__(self, *, hidden: AtLeast1 = 64, temperature: Positive = 1.0, teacher: Index = 0) -> None:
        super().__init__()
        self.hidden, self.temperature, self.teacher = hidden, float(temperature), teacher

    def bind(self, probe: Probe) -> None:
        c = probe.num_classes
        self.discriminator = nn.Sequential(nn.Linear(c, self.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(self.hidden, self.hidden), nn.LeakyReLU(0.2),
                                           nn.Linear(self.hidden, 1))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        s = torch.softmax(view.logits.float() / self.temperature, dim=1)
        t = torch.softmax(view.teacher_logits[self.teacher].detach().float() / self.temperature, dim=1)
        real, fake = self.discriminator(t), self.discriminator(s.detach())
        d_loss = (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
        frozen = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        fooled = functional_call(self.discriminator, frozen, (s,))
        g_loss = F.binary_cross_entropy_with_logits(fooled, torch.ones_like(fooled))
        return {"adv_d": d_loss, "adv_g": g_loss}
