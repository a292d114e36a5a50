"""Search-quality arithmetic on hand-made cases, and the fitted combination's cross-validation."""
import numpy as np
import pytest

from nas_kd.rankcorr import fitted
from nas_kd.stats import holm, pooled_t_test
from nas_kd.rankcorr.quality import (
    band_metrics,
    difference_to_population,
    repeats_difference_to_population,
    noise_ceiling,
    paired_tau_difference,
    pooled_difference,
    precision_at,
    random_regret,
    regret,
    variance_components,
)


def test_regret_of_a_pick():
    truth = [0.90, 0.93, 0.91, 0.92]
    assert regret([4, 3, 2, 1], truth) == pytest.approx(3.0)  # picks 0.90, best 0.93
    assert regret([1, 9, 2, 3], truth) == pytest.approx(0.0)
    assert regret([5, 1, 5, 0], truth) == pytest.approx(100 * (0.93 - 0.905))  # a tie counts as its mean
    assert random_regret(truth) == pytest.approx(100 * (0.93 - 0.915))


def test_noise_ceiling():
    a, b = [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.4, 0.3]
    assert noise_ceiling(np.array([a, b]).T, resamples=50)["tau"] == pytest.approx(4 / 6)
    assert noise_ceiling(np.array([a, a]).T, resamples=50)["tau"] == 1.0
    c = [0.4, 0.3, 0.2, 0.1]  # reversed: tau -1 with a, -4/6 with b
    three = noise_ceiling(np.array([a, b, c]).T, resamples=50)
    assert three["tau"] == pytest.approx((4 / 6 - 1 - 4 / 6) / 3) and three["seed_pairs"] == 3
    lo, hi = three["tau_ci95"]
    assert -1 <= lo <= hi <= 1


def test_variance_components_on_a_hand_computed_case():
    per_seed = np.array([[0.80, 0.82], [0.90, 0.92], [0.70, 0.74]])
    msb = 2 * sum((m - 0.81333333333) ** 2 for m in (0.81, 0.91, 0.72)) / 2
    msw = (2 * 0.01**2 + 2 * 0.01**2 + 2 * 0.02**2) / 3
    icc = (msb - msw) / (msb + msw)
    vc = variance_components(per_seed)
    assert vc["seed_sd_pooled"] == pytest.approx(100 * msw**0.5) == pytest.approx(2.0)
    assert vc["icc"] == pytest.approx(icc, rel=1e-6) and vc["between_sd"] == pytest.approx(100 * ((msb - msw) / 2) ** 0.5)
    r2 = 2 * icc / (1 + icc)  # Spearman-Brown: the reliability of the mean of 2 seeds
    assert vc["ceiling_vs_mean"] == pytest.approx(2 / np.pi * np.arcsin(r2**0.5))
    assert vc["icc_ci95"][0] < vc["icc"] < vc["icc_ci95"][1] <= 1
    flat = variance_components(np.array([[0.9, 0.8], [0.8, 0.9], [0.85, 0.85]]))  # no arch effect at all
    assert flat["icc"] < 0 and flat["ceiling_vs_mean"] == 0.0


def test_icc_and_its_interval_match_shrout_and_fleiss_1979():
    """Their 6 targets x 4 judges: ICC(1,1) = 0.17 (Table 4); interval [-0.13, 0.72] as published for it."""
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]) / 100
    vc = variance_components(ratings)
    assert vc["icc"] == pytest.approx(0.1658, abs=5e-4)
    assert vc["icc_ci95"] == pytest.approx([-0.133, 0.723], abs=0.005)


def test_paired_tau_difference_is_known_where_the_answer_is():
    truth = np.arange(12.0)
    same = paired_tau_difference(truth * 2, truth * 2, truth, resamples=200)
    assert same["diff"] == 0.0 and same["ci95"] == [0.0, 0.0]
    best = paired_tau_difference(truth, -truth, truth, resamples=200)  # perfect vs reversed: +2 on every resample
    assert best["diff"] == pytest.approx(2.0) and best["ci95"] == pytest.approx([2.0, 2.0])
    noisy = paired_tau_difference(truth + np.resize([0, 3, -3], 12), truth, truth, resamples=300)
    assert noisy["diff"] < 0 and noisy["ci95"][0] <= noisy["diff"] <= noisy["ci95"][1] <= 0


def test_holm_pooled_t_and_differences_to_the_band():
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    assert holm({"b0.12": 0.026, "b0.06": 0.38, "b0.25": 0.20})["b0.12"] == pytest.approx(0.078)
    from scipy.stats import ttest_ind

    a, b = [0.86, 0.87, 0.865], [0.85, 0.858, 0.852]
    assert pooled_t_test(a, b) == pytest.approx(ttest_ind(a, b).pvalue)  # no other groups: Student's test
    others = [[0.80, 0.81, 0.79], [0.9, 0.9, 0.91]]
    ss = sum(((np.array(g) - np.mean(g)) ** 2).sum() for g in (a, b, *others))
    t = (np.mean(a) - np.mean(b)) / (ss / 8 * (2 / 3)) ** 0.5
    from scipy.stats import t as t_dist

    assert pooled_t_test(a, b, others) == pytest.approx(2 * t_dist.sf(abs(t), 8))
    d = difference_to_population([0.87, 0.86], [0.84, 0.85, 0.86])
    assert d["diff"] == pytest.approx(1.5)
    assert d["se"] == pytest.approx(100 * (np.var([0.87, 0.86], ddof=1) / 2 + np.var([0.84, 0.85, 0.86], ddof=1) / 3) ** 0.5)
    pooled = pooled_difference([{"diff": 1.0, "se": 1.0}, {"diff": 3.0, "se": 1.0}])
    # search repeats: two found the same student (shared seeds), one another
    a_, b_, pop = [0.87, 0.86], [0.83, 0.85], [0.84, 0.85, 0.86]
    rep = repeats_difference_to_population([a_, a_, b_], pop)
    means = np.array([0.865, 0.865, 0.84])
    seed_part = (np.var(a_, ddof=1) / 2 + np.var(b_, ddof=1) / 2) / 2 / 2
    assert rep["diff"] == pytest.approx(100 * (means.mean() - 0.85)) and (rep["repeats"], rep["distinct"]) == (3, 2)
    assert rep["se"] == pytest.approx(100 * (means.var(ddof=1) / 3 + seed_part + np.var(pop, ddof=1) / 3) ** 0.5)
    assert pooled == pytest.approx({"diff": 2.0, "se": 2**-0.5, "parts": 2})


def test_precision_and_band_metrics():
    truth = list(range(8))
    assert precision_at(truth, truth, 0.25) == 1.0
    assert precision_at([-t for t in truth], truth, 0.25) == 0.0
    m = band_metrics(truth, truth, ceiling=0.5, resamples=50)
    assert m["kendall_tau"] == 1.0 and m["fraction_of_ceiling"] == 2.0 and m["regret"] == 0.0
    assert band_metrics(truth, truth, ceiling=0.29, resamples=50)["fraction_of_ceiling"] is None  # a flat band


def test_fitted_combination_learns_across_bands():
    rng = np.random.default_rng(0)
    feats, truth = {}, {}
    for b in ("0.06", "0.12", "0.25"):
        x = rng.normal(size=(16, 3))
        feats[b], truth[b] = x, 2 * x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=16) + {"0.06": 0, "0.12": 5, "0.25": 9}[b]
    pred = fitted.cross_validated(feats, truth)
    for b in feats:
        assert np.corrcoef(pred[b], truth[b])[0, 1] > 0.9


def test_fitted_combination_is_never_scored_on_its_training_archs():
    rng = np.random.default_rng(1)
    feats = {b: rng.normal(size=(10, 2)) for b in "abc"}
    truth = {b: rng.normal(size=10) for b in "abc"}
    base = fitted.cross_validated(feats, truth)
    for b in feats:  # changing a band's own truth must not change that band's predictions
        poisoned = dict(truth, **{b: feats[b][:, 0] * 100})
        assert np.allclose(fitted.cross_validated(feats, poisoned)[b], base[b])
        others = [g for g in feats if g != b]
        assert not np.allclose(fitted.cross_validated(feats, poisoned)[others[0]], base[others[0]])


def test_k_fold_inside_one_band_learns_and_never_scores_its_training_archs():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(16, 3))
    y = 2 * x[:, 0] - x[:, 2] + 0.1 * rng.normal(size=16)
    pred = fitted.k_fold(x, y, seed=0)
    assert np.corrcoef(pred, y)[0, 1] > 0.9
    folds = np.array_split(np.random.default_rng(0).permutation(16), fitted.FOLDS)
    for fold in folds:  # poisoning a fold's own truth must not move that fold's predictions, only the others'
        poisoned = y.copy()
        poisoned[fold] = 100 * rng.normal(size=len(fold))
        moved = fitted.k_fold(x, poisoned, seed=0)
        assert np.allclose(moved[fold], pred[fold])
        assert not np.allclose(np.delete(moved, fold), np.delete(pred, fold))
    with pytest.raises(ValueError, match="at least 8 archs"):
        fitted.k_fold(x[:7], y[:7])
