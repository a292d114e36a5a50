"""Similarity measures between teacher and subnet: RDMs (TGSA), linear CKA, output KL.

All take activations as ``(n, ...)`` tensors over the same n probe images. Centring and
normalisation run in float64; the n x n products in float32 (cost n^2 d), then float64 again.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from nas_kd.errors import UserError


def flatten(features: torch.Tensor, proj_dim: int | None = None, seed: int = 0) -> torch.Tensor:
    """``(n, d)`` float64 activation rows; when ``d > proj_dim``, a fixed Gaussian random projection to
    ``proj_dim`` (Johnson-Lindenstrauss: pairwise correlations are kept approximately). It pays off
    only for very wide layers (memory) or k < n: the RDM itself costs n^2 d."""
    x = features.detach().reshape(len(features), -1).double().cpu()
    if proj_dim and x.shape[1] > proj_dim:
        x = x @ _projection(x.shape[1], proj_dim, seed)
    return x


@lru_cache(maxsize=16)
def _projection(d: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(d, k, generator=g, dtype=torch.float64) / k**0.5


def rdm(features: torch.Tensor, proj_dim: int | None = None) -> torch.Tensor:
    """Upper triangle (no diagonal) of the representational dissimilarity matrix 1 - Pearson(r_i, r_j).

    One matrix product: centre each activation row, L2-normalise it, RDM = 1 - Z Z^T.
    """
    z = flatten(features, proj_dim)
    z = z - z.mean(dim=1, keepdim=True)
    z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-12)
    zf = z.float()
    m = 1.0 - (zf @ zf.T).double()
    i, j = torch.triu_indices(len(m), len(m), offset=1)
    return m[i, j]


def _rank(v: torch.Tensor) -> torch.Tensor:
    """Average ranks (ties share the mean rank), as Spearman needs."""
    sorted_v, order = torch.sort(v)
    ranks = torch.empty_like(v)
    ranks[order] = torch.arange(len(v), dtype=v.dtype)
    _, inverse, counts = torch.unique_consecutive(sorted_v, return_inverse=True, return_counts=True)
    if len(counts) < len(v):  # ties: replace by the mean rank of their group
        starts = torch.cumsum(counts, 0) - counts
        mean_rank = (starts + (counts - 1) / 2.0).to(v.dtype)
        ranks[order] = mean_rank[inverse]
    return ranks


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two vectors (0 when one is constant)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = (a.norm() * b.norm()).item()
    return float((a @ b).item() / den) if den > 0 else 0.0


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman rank correlation (Pearson of average ranks)."""
    return pearson(_rank(a.double()), _rank(b.double()))


def rdm_similarity(rdm_a: torch.Tensor, rdm_b: torch.Tensor, method: str = "spearman") -> float:
    """Correlation of two RDM upper triangles (``spearman`` or ``pearson``)."""
    if method not in ("spearman", "pearson"):
        raise UserError(f"rdm correlation {method!r} is not one of: spearman, pearson")
    return spearman(rdm_a, rdm_b) if method == "spearman" else pearson(rdm_a, rdm_b)


def centred_gram(features: torch.Tensor) -> torch.Tensor:
    """Double-centred linear Gram matrix H X X^T H of the activation rows."""
    x = flatten(features)
    x = (x - x.mean(dim=0, keepdim=True)).float()
    return (x @ x.T).double()


def linear_cka(gram_a: torch.Tensor, gram_b: torch.Tensor) -> float:
    """Linear CKA (Kornblith et al. 2019) from two centred Gram matrices: <Ka, Kb> / (|Ka| |Kb|)."""
    den = (gram_a.norm() * gram_b.norm()).item()
    return float((gram_a * gram_b).sum().item() / den) if den > 0 else 0.0


def mean_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> float:
    """Mean over samples of KL(softmax(teacher) || softmax(student)), in nats."""
    t = F.log_softmax(teacher_logits.double(), dim=1)
    s = F.log_softmax(student_logits.double(), dim=1)
    return float((t.exp() * (t - s)).sum(dim=1).mean().item())
