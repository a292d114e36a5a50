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


def variance_components(per_seed: np.ndarray, level: float = 0.95) -> dict:
    """One-way random-effects ANOVA of ``per_seed`` (archs x k seeds, accuracy fractions).

    Returns, in points where they are accuracies: ``seed_sd_pooled`` = sqrt(MSW), the pooled within-arch (seed)
    s.d.; ``between_sd`` = sqrt(max((MSB - MSW) / k, 0)), the spread of the archs' true means; ``icc`` =
    ICC(1) = (MSB - MSW) / (MSB + (k - 1) MSW), the share of one seed's variance that is the arch's, with its
    exact interval from the F distribution (Shrout & Fleiss 1979); ``ceiling_vs_mean``: the Kendall tau a perfect
    evaluator (one that knows the true means) reaches against the k-seed mean the evaluators are scored on:
    the mean's reliability R_k = k ICC / (1 + (k - 1) ICC) (Spearman-Brown), as a correlation sqrt(R_k) and a
    tau 2/pi asin(sqrt(R_k)) (normal scores); 0 when ICC <= 0. Every seed is scored on the same test images, so
    their binomial error is shared and is not part of the seed-to-seed spread."""
    from scipy.stats import f as f_dist

    x = np.asarray(per_seed, dtype=float)
    n, k = x.shape
    arch_means = x.mean(1)
    msb = k * float(((arch_means - arch_means.mean()) ** 2).sum()) / (n - 1)
    msw = float(((x - arch_means[:, None]) ** 2).sum()) / (n * (k - 1))
    icc = (msb - msw) / (msb + (k - 1) * msw) if msb + (k - 1) * msw > 0 else 0.0
    f0, df1, df2 = msb / msw if msw > 0 else float("inf"), n - 1, n * (k - 1)
    q = f_dist.ppf(1 - (1 - level) / 2, df1, df2), f_dist.ppf(1 - (1 - level) / 2, df2, df1)
    fl, fu = f0 / q[0], f0 * q[1]
    reliability = k * icc / (1 + (k - 1) * icc) if icc > 0 else 0.0
    return {"seed_sd_pooled": 100 * msw**0.5, "between_sd": 100 * max((msb - msw) / k, 0.0) ** 0.5,
            "icc": icc, "icc_ci95": [(fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1)],
            "ceiling_vs_mean": 2 / np.pi * float(np.arcsin(reliability**0.5)), "seeds": k,
            "truth_range": 100 * float(arch_means.max() - arch_means.min())}


def paired_tau_difference(score: Sequence[float], baseline: Sequence[float], truth: Sequence[float],
                          resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """tau(score, truth) - tau(baseline, truth) with a paired percentile bootstrap interval: both taus are taken on
    the same resampled archs, so the interval answers "does ``score`` rank better than ``baseline``?"."""
    s, b, t = (np.asarray(v, dtype=float) for v in (score, baseline, truth))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        idx = rng.integers(0, len(t), len(t))
        d = kendall_tau(s[idx], t[idx]) - kendall_tau(b[idx], t[idx])
        if not np.isnan(d):
            diffs.append(d)
    lo, hi = np.percentile(diffs, [100 * (1 - level) / 2, 100 * (1 + level) / 2]) if diffs else (np.nan, np.nan)
    return {"diff": kendall_tau(s, t) - kendall_tau(b, t), "ci95": [float(lo), float(hi)]}


def difference_to_population(picked: Sequence[float], population_means: Sequence[float]) -> dict:
    """mean(picked seeds) - mean(the population's arch means), in points, with its standard error
    sqrt(var(picked) / n + var(population means) / m): how much better than a random arch of the band."""
    p, pop = np.asarray(picked, dtype=float), np.asarray(population_means, dtype=float)
    se = (p.var(ddof=1) / len(p) + pop.var(ddof=1) / len(pop)) ** 0.5
    return {"diff": 100 * float(p.mean() - pop.mean()), "se": 100 * float(se)}


def repeats_difference_to_population(repeats: Sequence[Sequence[float]], population_means: Sequence[float]) -> dict:
    """The mean over search repeats of (the repeat's seed mean) - mean(the population's arch means), in points.

    ``repeats``: per repeat, its student's per-seed accuracies. The standard error adds the spread of the repeats'
    means (the search's own variability), the seed noise of the distinct students (repeats that picked the same arch
    share it) and the population's: sqrt(var(repeat means) / R + mean_k(var_k / n_k) / D + var(population) / m).
    The seed noise is inside the repeats' spread as well, so this errs on the wide side."""
    means = np.array([np.mean(r) for r in repeats])
    distinct = {tuple(r) for r in repeats}
    seed_part = np.mean([np.var(r, ddof=1) / len(r) for r in distinct]) / len(distinct)
    pop = np.asarray(population_means, dtype=float)
    spread = means.var(ddof=1) / len(means) if len(means) > 1 else 0.0
    se = (spread + seed_part + pop.var(ddof=1) / len(pop)) ** 0.5
    return {"diff": 100 * float(means.mean() - pop.mean()), "se": 100 * float(se), "repeats": len(means),
            "distinct": len(distinct)}


def pooled_difference(parts: Sequence[dict]) -> dict:
    """The inverse-variance weighted mean of several ``{diff, se}`` (e.g. one per budget) and its standard error."""
    w = np.array([1 / d["se"] ** 2 for d in parts])
    diff = np.array([d["diff"] for d in parts])
    return {"diff": float((w * diff).sum() / w.sum()), "se": float(w.sum() ** -0.5), "parts": len(parts)}


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
