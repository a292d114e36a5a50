"""Loss modules holding hyper-parameters (and trainable connectors), chosen by name from ``LOSSES``.

Every module is called as ``loss(student, teacher)``; the teacher side is detached.
Connectors (``HintLoss.connector``) belong to the loss, never to the student: they are not
counted in a student's FLOPs and not exported.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.losses import functional as LF
from nas_kd.registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")


@LOSSES.register("kd")
class KDLoss(nn.Module):
    """Hinton KD at temperature T (scaled by T^2), plus ``ce_weight`` x cross-entropy when labels are given.

    Example (config): ``{name: kd, temperature: 4.0, ce_weight: 0.5}``.
    """

    def __init__(self, temperature: float = 4.0, ce_weight: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"kd: temperature must be > 0, got {temperature}")
        self.temperature, self.ce_weight = temperature, ce_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        loss = LF.kd_loss(student, teacher.detach(), self.temperature)
        if labels is not None and self.ce_weight:
            loss = loss + self.ce_weight * F.cross_entropy(student.float(), labels)
        return loss


@LOSSES.register("alpha_div")
class AlphaDivergence(nn.Module):
    r"""AlphaNet's adaptive alpha-divergence (Wang et al., "AlphaNet", ICML 2021).

    With q = softmax(student), p = softmax(teacher) (temperature 1, detached), w = p / q:

    * D_a = sum_c q_c (v_c - 1) / (a (a - 1)), v = clamp(w^a, 0, iw_clip), for a general alpha;
    * D_0 = sum_c q_c (-log clamp(w, 0, iw_clip))  (KL(q || p)) when |a| < 1e-3;
    * D_1 = sum_c q_c w_c log w_c = KL(p || q), unclipped, when |a - 1| < 1e-3.

    Per sample the larger of D_{alpha_min} and D_{alpha_max} is picked (ties: alpha_max);
    the returned value is the batch mean of the picked divergence (>= 0, a true divergence).
    Its gradient is that of the clipped estimator: d/dz_j = -(q_j r_j - q_j sum_c q_c r_c) / B
    with r = v/a + 1/(a(a-1)), r = log clamp(w) - 1 (a ~ 0) or r = w (a ~ 1).
    """

    def __init__(self, alpha_min: float = -1.0, alpha_max: float = 1.0, iw_clip: float = 5.0) -> None:
        super().__init__()
        for name, value in (("alpha_min", alpha_min), ("alpha_max", alpha_max), ("iw_clip", iw_clip)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"alpha_div: {name} must be a number, got {value!r}")
        if alpha_min > alpha_max:
            raise ValueError(f"alpha_div: alpha_min={alpha_min} must be <= alpha_max={alpha_max}")
        if iw_clip <= 0:
            raise ValueError(f"alpha_div: iw_clip must be > 0, got {iw_clip}")
        self.alpha_min, self.alpha_max, self.iw_clip = float(alpha_min), float(alpha_max), float(iw_clip)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return LF.alpha_divergence(student, teacher, self.alpha_min, self.alpha_max, self.iw_clip)


@LOSSES.register("hint")
class HintLoss(nn.Module):
    """FitNets hint: MSE between features, through a learned 1x1 conv connector when channels differ."""

    def __init__(self, student_channels: int, teacher_channels: int) -> None:
        super().__init__()
        self.connector = (
            nn.Identity() if student_channels == teacher_channels
            else nn.Conv2d(student_channels, teacher_channels, 1, bias=False)
        )

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return LF.hint_loss(self.connector(student.float()), teacher)


@LOSSES.register("at")
class AttentionTransfer(nn.Module):
    """Attention transfer (Zagoruyko & Komodakis, ICLR 2017) with exponent ``p``."""

    def __init__(self, p: float = 2.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return LF.attention_transfer(student, teacher, self.p)


@LOSSES.register("sp")
class SPLoss(nn.Module):
    """Similarity-preserving KD (Tung & Mori, ICCV 2019)."""

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return LF.similarity_preserving(student, teacher)


@LOSSES.register("rkd")
class RKDLoss(nn.Module):
    """Relational KD (Park et al., CVPR 2019): distance + angle terms."""

    def __init__(self, distance_weight: float = 1.0, angle_weight: float = 2.0) -> None:
        super().__init__()
        self.distance_weight, self.angle_weight = distance_weight, angle_weight

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        return LF.rkd_loss(student, teacher, self.distance_weight, self.angle_weight)
