import numpy as np
import pytest
from scipy import stats as sps

from nas_kd.rankcorr.stats import (
    bootstrap_interval,
    kendall_tau,
    precision_at_k,
    spearman,
    top_n_kendall,
    weighted_tau,
)

CASES = [
    ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]),
    ([1, 2, 2, 3, 4, 4, 5], [2, 1, 3, 3, 5, 4, 4]),  # ties in both
    (list(np.random.default_rng(0).normal(size=30)), list(np.random.default_rng(1).normal(size=30))),
    ([3, 1, 2, 2, 2, 5, 4, 0], [1, 1, 1, 2, 3, 3, 0, 0]),
]


@pytest.mark.parametrize("x,y", CASES)
def test_against_scipy(x, y):
    assert kendall_tau(x, y) == pytest.approx(sps.kendalltau(x, y).statistic, abs=1e-12)
    assert spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)
    assert weighted_tau(x, y) == pytest.approx(sps.weightedtau(x, y).statistic, abs=1e-12)


def test_precision_at_k_hand_cases():
    truth = list(range(20))  # top 10 %: items 19 and 18
    assert precision_at_k(truth, truth) == 1.0
    assert precision_at_k([-t for t in truth], truth) == 0.0
    score = [0] * 20
    score[19], score[3] = 10, 9  # one of the two found
    assert precision_at_k(score, truth) == 0.5


def test_top_n_and_bootstrap():
    truth = np.arange(10.0)
    score = truth.copy()
    score[:5] = score[:5][::-1]  # bottom half scrambled, top half right
    t = top_n_kendall(score, truth, [10, 5])
    assert t[5] == 1.0 and t[10] < 1.0
    lo, hi = bootstrap_interval(kendall_tau, score, truth, resamples=200)
    assert lo <= kendall_tau(score, truth) <= hi
