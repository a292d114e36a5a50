"""The statistics module against scipy and against simulation on known inputs."""
import numpy as np
import pytest
from scipy import stats as sp

from nas_kd.stats import (
    cell,
    compare_family,
    detectable_difference,
    holm,
    tost,
    verdict,
    welch,
)

A = [0.912, 0.918, 0.915]
B = [0.905, 0.903, 0.910, 0.901]


def test_welch_is_scipys_welch_test_with_its_interval():
    c = welch(A, B)
    ref = sp.ttest_ind(A, B, equal_var=False)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-9) and c.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert c.ci == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-9)
    assert c.df == pytest.approx(ref.df, rel=1e-9) and c.p_holm == c.p and c.n == (3, 4)
    with pytest.raises(ValueError, match="at least 2"):
        welch([0.9], B)


def test_holm_over_a_stated_family():
    assert holm({"a": 0.01, "b": 0.04, "c": 0.03}) == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06})
    groups = {"kd": B, "x": A, "y": [0.904, 0.906], "z": [0.9]}  # z: one seed, not tested
    fam = compare_family(groups, "kd")
    assert set(fam) == {"x", "y"}
    raw = {n: sp.ttest_ind(groups[n], B, equal_var=False).pvalue for n in ("x", "y")}
    assert {n: c.p_holm for n, c in fam.items()} == pytest.approx(holm(raw))
    assert compare_family({"kd": [0.9], "x": A}, "kd") == {}


def test_tost_says_level_only_within_the_margin():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.90, 0.002, 6), rng.normal(0.9005, 0.002, 6)
    assert tost(a, b, 0.01) < 0.01 and tost(a, b, 0.0001) > 0.5
    # by hand: the larger of the two one-sided Welch p-values
    c = welch(a, b)
    lower = sp.t.sf((c.diff + 0.003) / c.se, c.df)
    upper = sp.t.cdf((c.diff - 0.003) / c.se, c.df)
    assert tost(a, b, 0.003) == pytest.approx(max(lower, upper))
    assert verdict(welch(a, b), a, b, margin=0.01) == "level"
    assert verdict(welch(a, b), a, b) == "not separable"  # no margin stated: never "level"
    assert verdict(welch(A, B)) == "higher" and verdict(welch(B, A)) == "lower"


@pytest.mark.parametrize("n", [2, 3, 5])
def test_detectable_difference_has_the_stated_power(n):
    sd = 0.004
    delta = detectable_difference(sd, n)
    rng = np.random.default_rng(n)
    a = rng.normal(delta, sd, (40000, n))
    b = rng.normal(0.0, sd, (40000, n))
    p = sp.ttest_ind(a, b, axis=1).pvalue
    assert (p < 0.05).mean() == pytest.approx(0.80, abs=0.015)
    # large samples: the normal approximation
    assert detectable_difference(1.0, 400) == pytest.approx((1.959964 + 0.841621) * (2 / 400) ** 0.5, rel=0.01)


def test_the_summed_sd_rule_is_not_a_test_and_welch_holds_its_level():
    """Under the null, |diff| > sd_a + sd_b marks about a fifth of 2-seed pairs; Welch's test marks at most 5 %."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (20000, 2)), rng.normal(0, 1, (20000, 2))
    star = np.abs(a.mean(1) - b.mean(1)) > a.std(1, ddof=1) + b.std(1, ddof=1)
    assert 0.15 < star.mean() < 0.28
    p = sp.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert (p < 0.05).mean() <= 0.05


def test_a_cell_shows_the_difference_and_its_adjusted_p():
    c = compare_family({"kd": B, "x": A}, "kd")["x"]
    assert cell(c) == f"**+{100 * c.diff:.2f} (p {c.p_holm:.2g})**" and cell(None) == "-"
