"""Distillation losses as pure functions on tensors. Every input is computed in float32.

Each function is finite for extreme inputs (logits up to 1e4 in magnitude, fp16/bf16
inputs) and, where the math says so, zero when student equals teacher.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton et al. 2015: ``T^2 * KL(softmax(t/T) || softmax(s/T))``, mean over the batch (teacher detached)."""
    s = F.log_softmax(student.float() / temperature, dim=1)
    t = F.log_softmax(teacher.detach().float() / temperature, dim=1)
    return F.kl_div(s, t, reduction="batchmean", log_target=True) * temperature**2


def _alpha_terms(logq: torch.Tensor, logp: torch.Tensor, alpha: float, iw_clip: float):
    """Per-sample divergence D_alpha and the per-class ``q * r`` of its gradient (see :func:`alpha_divergence`)."""
    q, p = logq.exp(), logp.exp()
    logw = logp - logq
    log_clip = math.log(iw_clip)
    if abs(alpha) < 1e-3:  # KL(q || p) with clipped importance weights
        r_q = q * (torch.clamp(logw, max=log_clip) - 1)
        d = (q * -torch.clamp(logw, max=log_clip)).sum(1)
    elif abs(alpha - 1) < 1e-3:  # KL(p || q), unclipped; q * w == p
        r_q = p
        d = torch.where(p > 0, p * logw, torch.zeros_like(p)).sum(1)
    else:
        v = torch.exp(torch.clamp(alpha * logw, max=log_clip))  # clamp(w^alpha, 0, iw_clip)
        r_q = q * (v / alpha + 1 / (alpha * (alpha - 1)))
        d = (q * (v - 1)).sum(1) / (alpha * (alpha - 1))
    return d, r_q


class _AlphaDivergenceFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, student, teacher, alpha_min, alpha_max, iw_clip):
        logq = F.log_softmax(student, dim=1)
        logp = F.log_softmax(teacher, dim=1)
        d_lo, rq_lo = _alpha_terms(logq, logp, alpha_min, iw_clip)
        d_hi, rq_hi = _alpha_terms(logq, logp, alpha_max, iw_clip)
        pick_hi = d_hi >= d_lo  # ties pick alpha_max
        d = torch.where(pick_hi, d_hi, d_lo)
        rq = torch.where(pick_hi[:, None], rq_hi, rq_lo)
        q = logq.exp()
        grad = -(rq - q * rq.sum(1, keepdim=True)) / student.shape[0]
        ctx.save_for_backward(grad)
        return d.mean()

    @staticmethod
    def backward(ctx, grad_out):
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None, None, None


def alpha_divergence(
    student: torch.Tensor, teacher: torch.Tensor, alpha_min: float = -1.0, alpha_max: float = 1.0, iw_clip: float = 5.0
) -> torch.Tensor:
    """AlphaNet's adaptive alpha-divergence (Wang et al., ICML 2021), batch mean; the math is in
    :class:`nas_kd.distill.response.AlphaDiv`. The gradient w.r.t. the student logits z is that of the
    clipped estimator: d/dz_j = -(q_j r_j - q_j sum_c q_c r_c) / B with r = v/a + 1/(a(a-1)),
    r = log clamp(w) - 1 (a ~ 0) or r = w (a ~ 1). Raises ``ValueError`` for alpha_min > alpha_max or iw_clip <= 0."""
    if alpha_min > alpha_max or not iw_clip > 0:
        raise ValueError(f"alpha_div: need alpha_min <= alpha_max and iw_clip > 0, got {alpha_min}, {alpha_max}, {iw_clip}")
    return _AlphaDivergenceFn.apply(student.float(), teacher.detach().float(), float(alpha_min), float(alpha_max), float(iw_clip))


def match_spatial(s: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two 4-d maps down to the other's size (a no-op for equal sizes or other ranks)."""
    if s.ndim != 4 or s.shape[-2:] == t.shape[-2:]:
        return s, t
    if s.shape[-1] > t.shape[-1]:
        return F.adaptive_avg_pool2d(s, t.shape[-2:]), t
    return s, F.adaptive_avg_pool2d(t, s.shape[-2:])


def hint_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FitNets (Romero et al., ICLR 2015): mean squared error between (connected) features, the larger map
    pooled to the smaller's size."""
    s, t = match_spatial(student.float(), teacher.detach().float())
    return F.mse_loss(s, t)


def attention_map(feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Zagoruyko & Komodakis: the L2-normalised map of channel-mean ``|f|^p``, flattened."""
    f = feat.float()
    f = f / f.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)  # scale-free, avoids overflow of f^p
    return F.normalize(f.abs().pow(p).mean(1).flatten(1), dim=1)


def attention_transfer(student: torch.Tensor, teacher: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Attention transfer (ICLR 2017): mean squared difference of attention maps (the larger map pooled first)."""
    s, t = match_spatial(student, teacher.detach())
    return (attention_map(s, p) - attention_map(t, p)).pow(2).mean()


def _similarity(feat: torch.Tensor) -> torch.Tensor:
    f = feat.float().flatten(1)
    f = f / f.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
    return F.normalize(f @ f.t(), dim=1)


def similarity_preserving(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD (Tung & Mori, ICCV 2019): ``||G_s - G_t||_F^2 / B^2`` of row-normalised Gram matrices."""
    b = student.shape[0]
    return (_similarity(student) - _similarity(teacher.detach())).pow(2).sum() / (b * b)


def _pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    sq = (e.unsqueeze(0) - e.unsqueeze(1)).pow(2).sum(-1)
    d = sq.clamp_min(1e-12).sqrt() * (1 - torch.eye(len(e), device=e.device))
    return d / d[d > 0].mean().clamp_min(1e-12) if (d > 0).any() else d


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


def rkd_loss(student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 1.0, angle_weight: float = 2.0) -> torch.Tensor:
    """Relational KD (Park et al., CVPR 2019): smooth-L1 on mean-normalised pairwise distances and on triplet angles."""
    s = student.float().flatten(1)
    t = teacher.detach().float().flatten(1)
    s = s / s.abs().amax().clamp_min(1e-12)  # rescale both: distances are normalised by their mean anyway
    t = t / t.abs().amax().clamp_min(1e-12)
    dist = F.smooth_l1_loss(_pairwise_distances(s), _pairwise_distances(t))
    angle = F.smooth_l1_loss(_angles(s), _angles(t))
    return distance_weight * dist + angle_weight * angle
