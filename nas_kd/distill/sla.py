"""``sla``: Self-supervised Label Augmentation with self-distillation (Lee, Hwang & Shin, "Self-supervised Label
Augmentation via Input Transformations", ICML 2020: SLA+SD)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.features import capture
from nas_kd.losses import functional as LF
from nas_kd.typecheck import NonNegative, Positive

ROTATIONS = 4  # 0, 90, 180, 270 degrees


@DISTILLERS.register("sla")
class SLA(Distiller):
    r"""A joint head over (class x rotation) labels, a linear layer on the student's pooled last-stage features,
    is trained on the batch rotated by 0, 90, 180 and 270 degrees (``sla_joint`` = CE of the joint label
    :math:`4y + k`); its aggregated prediction :math:`\bar z_c = \frac14 \sum_k z_{\mathrm{joint}}(\mathrm{rot}_k x)_{4c+k}`
    teaches the ordinary head (``sla_sd`` = ``alpha`` x :math:`T^2` KL(:math:`\sigma(\bar z/T)` detached ||
    student)). The student's own cross-entropy stays (``student.ce_weight``). Costs three more forward passes of
    the student per step; the joint head is never exported. Needs square inputs (a rotation keeps their shape).

    Example: ``{name: sla, weight: 1.0, alpha: 1.0, temperature: 1.0}``.
    """

    needs_teacher = False

    def __init__(self, *, alpha: NonNegative = 1.0, temperature: Positive = 1.0, stage: str | None = None) -> None:
        super().__init__()
        self.alpha, self.temperature, self.stage = float(alpha), float(temperature), stage

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        if self.stage is None:
            if not student_stages:
                raise self.error("the student has no known stages: give stage (its last feature map's module)")
            self.stage = student_stages[-1]

    def student_modules(self) -> list[str]:
        return [self.stage]

    def bind(self, probe: Probe) -> None:
        shape = probe.student_shapes[self.stage]
        if len(shape) != 4:
            raise self.error(f"stage {self.stage!r} outputs {list(shape)}, not a 4-d feature map")
        self.joint = nn.Linear(shape[1], ROTATIONS * probe.num_classes)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        x = view.inputs
        if x is None or view.student is None or x.shape[-1] != x.shape[-2]:
            raise self.error("needs the batch and the student (the distill trainer gives them) and square inputs")
        feats = [view.feats[self.stage].float()]
        for k in range(1, ROTATIONS):
            with capture(view.student, [self.stage]) as f:
                view.student(torch.rot90(x, k, dims=(2, 3)))
            feats.append(f[self.stage].float())
        joint = torch.stack([self.joint(f.mean((2, 3))) for f in feats])  # rotations x batch x (classes x 4)
        n, c = len(view.y), joint.shape[-1] // ROTATIONS
        labels = torch.stack([view.y * ROTATIONS + k for k in range(ROTATIONS)])
        ce = F.cross_entropy(joint.reshape(ROTATIONS * n, -1), labels.reshape(-1))
        per_rotation = joint.reshape(ROTATIONS, n, c, ROTATIONS)
        aggregated = torch.stack([per_rotation[k, :, :, k] for k in range(ROTATIONS)]).mean(0)
        return {"sla_joint": ce, "sla_sd": self.alpha * LF.kd_loss(view.logits, aggregated.detach(), self.temperature)}
