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


def dkd_loss(student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, beta: float = 8.0,
             temperature: float = 4.0) -> torch.Tensor:
    """Decoupled KD (Zhao et al., CVPR 2022): ``T^2 (alpha TCKD + beta NCKD)``, batch mean. TCKD is the KL of the
    binary (target class, the rest) probabilities, teacher to student; NCKD the KL of the distributions over the
    non-target classes alone (each a softmax of the non-target logits). Both are zero when student equals teacher."""
    s, t = student.float() / temperature, teacher.detach().float() / temperature
    n, c = s.shape
    mask = F.one_hot(target, c).bool()
    s_nt, t_nt = s[~mask].view(n, c - 1), t[~mask].view(n, c - 1)

    def binary(z: torch.Tensor, z_nt: torch.Tensor) -> torch.Tensor:  # log [p_target, 1 - p_target]
        whole = torch.logsumexp(z, dim=1)
        return torch.stack([z[mask] - whole, torch.logsumexp(z_nt, dim=1) - whole], dim=1)

    tckd = F.kl_div(binary(s, s_nt), binary(t, t_nt), reduction="batchmean", log_target=True)
    nckd = F.kl_div(F.log_softmax(s_nt, dim=1), F.log_softmax(t_nt, dim=1), reduction="batchmean", log_target=True)
    return temperature**2 * (alpha * tckd + beta * nckd)


def _pearson_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - Pearson correlation`` of the rows of ``a`` and ``b``."""
    return 1 - F.cosine_similarity(a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True), dim=1, eps=1e-8)


def dist_loss(student: torch.Tensor, teacher: torch.Tensor, beta: float = 2.0, gamma: float = 2.0,
              temperature: float = 4.0) -> torch.Tensor:
    """DIST (Huang et al., NeurIPS 2022): relations by Pearson correlation of the softened predictions instead of
    their exact match: ``T^2 (beta inter + gamma intra)``, inter the mean over samples of 1 - the correlation of
    student and teacher class distributions, intra the mean over classes of 1 - the correlation of their scores
    across the batch."""
    s = F.softmax(student.float() / temperature, dim=1)
    t = F.softmax(teacher.detach().float() / temperature, dim=1)
    inter = _pearson_distance(s, t).mean()
    intra = _pearson_distance(s.t(), t.t()).mean()
    return temperature**2 * (beta * inter + gamma * intra)


def standardise(logits: torch.Tensor) -> torch.Tensor:
    """Each row of logits z-scored: minus its mean, over its standard deviation."""
    z = logits.float()
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + 1e-7)


def logit_std_kd(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Logit standardisation (Sun et al., CVPR 2024): :func:`kd_loss` of the z-scored logits at a base temperature,
    so the student matches the teacher's logit relations, not their range."""
    return kd_loss(standardise(student), standardise(teacher.detach()), temperature)


def _cosine_probabilities(feat: torch.Tensor) -> torch.Tensor:
    f = F.normalize(feat.float().flatten(1), dim=1, eps=1e-12)
    k = (f @ f.t() + 1) / 2  # cosine similarity mapped to [0, 1]
    return k / k.sum(1, keepdim=True).clamp_min(1e-12)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Probabilistic knowledge transfer (Passalis & Tefas, ECCV 2018): each sample's conditional distribution over
    the batch, from a cosine-similarity kernel of the flattened features, teacher to student by KL (batch mean)."""
    s, t = _cosine_probabilities(student), _cosine_probabilities(teacher.detach())
    return (t * ((t + 1e-7).log() - (s + 1e-7).log())).sum(1).mean()


def _gaussian_correlation(feat: torch.Tensor, gamma: float, order: int) -> torch.Tensor:
    """The batch correlation matrix of L2-normalised embeddings by the Taylor expansion of a Gaussian RBF kernel:
    ``sum_{p <= order} exp(-2 gamma) (2 gamma)^p / p! (x_i . x_j)^p``."""
    f = F.normalize(feat.float().flatten(1), dim=1, eps=1e-12)
    dot = f @ f.t()
    return sum(math.exp(-2 * gamma) * (2 * gamma) ** p / math.factorial(p) * dot.pow(p) for p in range(order + 1))


def cc_loss(student: torch.Tensor, teacher: torch.Tensor, gamma: float = 0.4, order: int = 2) -> torch.Tensor:
    """Correlation congruence (Peng et al., ICCV 2019): ``||C_s - C_t||^2 / B^2`` of the batch correlation matrices
    (:func:`_gaussian_correlation`) of the student's and the teacher's embeddings."""
    b = student.shape[0]
    diff = _gaussian_correlation(student, gamma, order) - _gaussian_correlation(teacher.detach(), gamma, order)
    return diff.pow(2).sum() / (b * b)


def nst_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Neuron selectivity transfer (Huang & Wang, 2017): the squared MMD, polynomial kernel ``(x . y)^2``, between
    the student's and the teacher's channels, each channel's spatial map L2-normalised and taken as one sample of
    its network's distribution (the larger map pooled to the smaller's size first); batch mean."""
    s, t = match_spatial(student.float(), teacher.detach().float())
    s, t = F.normalize(s.flatten(2), dim=2, eps=1e-12), F.normalize(t.flatten(2), dim=2, eps=1e-12)

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (a @ b.transpose(1, 2)).pow(2).mean((1, 2))

    return (k(t, t) + k(s, s) - 2 * k(s, t)).mean()


def _row_probabilities(k: torch.Tensor) -> torch.Tensor:
    return k / k.sum(1, keepdim=True).clamp_min(1e-12)


def _jeffreys(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return ((p - q) * ((p + 1e-7).log() - (q + 1e-7).log())).mean()


def flow_divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """One layer pair's term of information-flow distillation (Passalis et al., CVPR 2020): the batch's conditional
    distributions from two kernels, cosine similarity mapped to [0, 1] and the Student-t kernel ``1 / (1 + d)`` of
    Euclidean distances, each matched by Jeffreys' divergence (mean over the B x B entries), summed."""
    s, t = student.float().flatten(1), teacher.detach().float().flatten(1)
    cos = _cosine_probabilities(s), _cosine_probabilities(t)
    heavy = [_row_probabilities(1 / (1 + (torch.cdist(f, f).pow(2) + 1e-6).sqrt())) for f in (s, t)]
    return _jeffreys(cos[1], cos[0]) + _jeffreys(heavy[1], heavy[0])
