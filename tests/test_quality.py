"""Search-quality arithmetic on hand-made cases, and the fitted combination's cross-validation."""
import numpy as np
import pytest

from nas_kd.rankcorr import fitted
from nas_kd.rankcorr.quality import (
    band_metrics,
    noise_ceiling,
    noise_parts,
    precision_at,
    random_regret,
    regret,
)


def test_regret_of_a_pick():
    truth = [0.90, 0.93, 0.91, 0.92]
    assert regret([4, 3, 2, 1], truth) == pytest.approx(3.0)  # picks 0.90, best 0.93
    assert regret([1, 9, 2, 3], truth) == pytest.approx(0.0)
    assert regret([5, 1, 5, 0], truth) == pytest.approx(100 * (0.93 - 0.905))  # a tie counts as its mean
    assert random_regret(truth) == pytest.approx(100 * (0.93 - 0.915))


def test_noise_ceiling_and_parts():
    a, b = [0.1, 0.2, 0.3, 0.4], [0.1, 0.2, 0.4, 0.3]
    assert noise_ceiling(np.array([a, b]).T, resamples=50)["tau"] == pytest.approx(4 / 6)
    assert noise_ceiling(np.array([a, a]).T, resamples=50)["tau"] == 1.0
    c = [0.4, 0.3, 0.2, 0.1]  # reversed: tau -1 with a, -4/6 with b
    three = noise_ceiling(np.array([a, b, c]).T, resamples=50)
    assert three["tau"] == pytest.approx((4 / 6 - 1 - 4 / 6) / 3) and three["seed_pairs"] == 3
    lo, hi = three["tau_ci95"]
    assert -1 <= lo <= hi <= 1
    per_seed = np.array([[0.90, 0.92], [0.91, 0.91]])
    se = np.full((2, 2), 0.005)
    parts = noise_parts(per_seed, se)
    sd = np.std([0.90, 0.92], ddof=1)
    assert parts["seed_sd"] == pytest.approx(100 * sd / 2)
    assert parts["measurement_se"] == pytest.approx(0.5)
    assert parts["seed_part_sd"] == pytest.approx(100 * max(sd**2 / 2 - 0.005**2, 0) ** 0.5)
    assert parts["truth_range"] == pytest.approx(0.0, abs=1e-9)


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
