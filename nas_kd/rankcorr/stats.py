"""Rank statistics of evaluator scores against ground truth (both oriented: higher is better).

Kendall tau-b and Spearman rho handle ties as scipy does; the weighted tau is Vigna's (2015)
top-heavy tau with hyperbolic weights 1/(r+1) and additive pair weights, averaged over the
rankings by each variable (scipy's ``weightedtau`` defaults).
"""
from __future__ import annotations

import random
from typing import Callable, Sequence

import numpy as np


def average_ranks(v: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    v = np.asarray(v, dtype=float)
    order = np.argsort(v, kind="mergesort")
    ranks = np.empty(len(v))
    sv = v[order]
    i = 0
    while i < len(v):
        j = i
        while j + 1 < len(v) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho (Pearson correlation of average ranks)."""
    return _pearson(average_ranks(x), average_ranks(y))


def _pair_signs(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    i, j = np.triu_indices(len(x), k=1)
    return np.sign(x[i] - x[j]), np.sign(y[i] - y[j]), i, j


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt((pairs - ties in x) (pairs - ties in y))."""
    sx, sy, _, _ = _pair_signs(np.asarray(x, float), np.asarray(y, float))
    den = np.sqrt(np.count_nonzero(sx) * np.count_nonzero(sy))
    return float((sx * sy).sum() / den) if den > 0 else float("nan")


def _weighted_tau_by(x: np.ndarray, y: np.ndarray, key: np.ndarray, tiebreak: np.ndarray) -> float:
    # importance rank 0 = the largest key (ties broken by the other variable, largest first)
    order = np.lexsort((-tiebreak, -key))
    rank = np.empty(len(x))
    rank[order] = np.arange(len(x))
    weight = 1.0 / (rank + 1.0)
    sx, sy, i, j = _pair_signs(x, y)
    w = weight[i] + weight[j]
    den = np.sqrt((w * (sx != 0)).sum() * (w * (sy != 0)).sum())
    return float((w * sx * sy).sum() / den) if den > 0 else float("nan")


def weighted_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Top-heavy weighted Kendall tau: pairs among the top-ranked elements weigh most."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return (_weighted_tau_by(x, y, x, y) + _weighted_tau_by(x, y, y, x)) / 2.0


def precision_at_k(score: Sequence[float], truth: Sequence[float], fraction: float = 0.1) -> float:
    """Share of the top ``fraction`` by ``truth`` that are also in the top ``fraction`` by ``score``."""
    n = len(truth)
    k = max(1, round(fraction * n))
    top_truth = set(np.argsort(-np.asarray(truth, float), kind="mergesort")[:k].tolist())
    top_score = set(np.argsort(-np.asarray(score, float), kind="mergesort")[:k].tolist())
    return len(top_truth & top_score) / k


STATS: dict[str, Callable[[Sequence[float], Sequence[float]], float]] = {
    "kendall_tau": kendall_tau, "spearman": spearman, "weighted_tau": weighted_tau, "precision_at_10pct": precision_at_k,
}


def bootstrap_interval(stat: Callable, score: Sequence[float], truth: Sequence[float], resamples: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``stat(score, truth)`` over archs resampled with replacement."""
    score, truth = np.asarray(score, float), np.asarray(truth, float)
    rng = random.Random(seed)
    values = []
    for _ in range(resamples):
        idx = [rng.randrange(len(score)) for _ in range(len(score))]
        v = stat(score[idx], truth[idx])
        if not np.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def top_n_kendall(score: Sequence[float], truth: Sequence[float], sizes: Sequence[int]) -> dict[int, float]:
    """Kendall tau among the top-n archs by ground truth, for each n in ``sizes``."""
    score, truth = np.asarray(score, float), np.asarray(truth, float)
    order = np.argsort(-truth, kind="mergesort")
    return {n: kendall_tau(score[order[:n]], truth[order[:n]]) for n in sizes if 2 <= n <= len(truth)}
