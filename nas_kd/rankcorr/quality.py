"""Search-quality metrics inside one budget band: noise ceiling, rank agreement, and the regret of a pick.

All accuracies are fractions; regrets are returned in accuracy points (x100). ``truth`` is the ground
truth of the band's archs (seed mean); a score is oriented so that higher means "pick this one".
"""
from __future__ import annotations

from itertools import combinations
from typing import Sequence

import numpy as np

from nas_kd.rankcorr.stats import bootstrap_interval, kendall_tau, spearman


FLAT_CEILING = 0.3  # a band whose noise ceiling is below this is flat: its ground truth is mostly seed noise,
# and a tau as a fraction of such a ceiling means nothing (none is given)


def noise_ceiling(per_seed: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict:
    """Kendall tau between the ground truths of two seeds of the same archs (the best any evaluator can
    expect), averaged over every pair of seeds: ``per_seed`` is (archs, seeds), at least two seeds. With
    its bootstrap 95 % interval over archs."""
    per_seed = np.asarray(per_seed, dtype=float)
    pairs = list(combinations(range(per_seed.shape[1]), 2))

    def mean_tau(rows: np.ndarray, _: np.ndarray) -> float:  # bootstrap_interval resamples a pair of arrays
        return float(np.mean([kendall_tau(rows[:, i], rows[:, j]) for i, j in pairs]))

    return {"tau": mean_tau(per_seed, per_seed), "seed_pairs": len(pairs),
            "tau_ci95": bootstrap_interval(mean_tau, per_seed, per_seed, resamples, seed)}


def noise_parts(per_seed: np.ndarray, measurement_se: np.ndarray) -> dict[str, float]:
    """Split the seed-to-seed spread: ``per_seed`` is (archs, seeds) accuracy; ``measurement_se`` the
    binomial standard error of each accuracy (archs, seeds). Returns, in points, the mean seed standard
    deviation, the mean measurement s.e., and the seed part left once the measurement variance is removed."""
    sd = per_seed.std(axis=1, ddof=1) if per_seed.shape[1] > 1 else np.zeros(len(per_seed))
    meas = float(np.mean(measurement_se))
    seed_var = max(float(np.mean(sd**2)) - meas**2, 0.0)
    return {"seed_sd": 100 * float(np.mean(sd)), "measurement_se": 100 * meas, "seed_part_sd": 100 * seed_var**0.5,
            "truth_range": 100 * float(per_seed.mean(1).max() - per_seed.mean(1).min())}


def precision_at(score: Sequence[float], truth: Sequence[float], fraction: float = 0.25) -> float:
    """Share of the top ``fraction`` archs by ``truth`` also in the top ``fraction`` by ``score`` (at least one arch)."""
    k = max(1, round(fraction * len(truth)))
    top_s = set(np.argsort(-np.asarray(score), kind="stable")[:k])
    top_t = set(np.argsort(-np.asarray(truth), kind="stable")[:k])
    return len(top_s & top_t) / k


def regret(score: Sequence[float], truth: Sequence[float]) -> float:
    """Points lost by taking the arch with the highest score instead of the best: max(truth) - truth[pick].
    Tied top scores count as their mean truth (an unbiased tie-break)."""
    s, t = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    picks = np.flatnonzero(s == s.max())
    return 100 * float(t.max() - t[picks].mean())


def random_regret(truth: Sequence[float]) -> float:
    """Expected regret of a uniformly random pick: max(truth) - mean(truth), in points."""
    t = np.asarray(truth, dtype=float)
    return 100 * float(t.max() - t.mean())


def band_metrics(score: Sequence[float], truth: Sequence[float], ceiling: float, resamples: int = 1000,
                 seed: int = 0) -> dict:
    """Every metric of one evaluator in one band."""
    tau = kendall_tau(score, truth)
    return {
        "kendall_tau": tau, "kendall_tau_ci95": bootstrap_interval(kendall_tau, score, truth, resamples, seed),
        "spearman": spearman(score, truth),
        "fraction_of_ceiling": tau / ceiling if ceiling >= FLAT_CEILING else None,
        "precision_at_25pct": precision_at(score, truth, 0.25),
        "regret": regret(score, truth),
    }
