"""The one statistics module: every table, page and generated sentence that compares results takes its test here.

Two means of independent seeds are compared with Welch's t-test (:func:`welch`; unequal variances, no pooling
unless the design justifies it: :func:`pooled_t_test`), a family of comparisons is corrected with Holm's step-down
(:func:`holm`, :func:`compare_family`), "level" / "tie" needs an equivalence test at a stated margin
(:func:`tost`), and a table says the smallest difference its seed count can detect (:func:`detectable_difference`).
:func:`verdict` turns one comparison into the words a page may use. Accuracies are fractions; differences are
reported as given (callers scale to points).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

ALPHA = 0.05
POWER = 0.8


@dataclass(frozen=True)
class Comparison:
    """mean(a) - mean(b) by Welch's test: the difference, its standard error, Welch-Satterthwaite degrees of
    freedom, the two-sided p (``p``), the Holm-adjusted p over the family it was tested in (``p_holm``; ``p`` when
    tested alone) and the ``level`` confidence interval of the difference."""

    diff: float
    se: float
    df: float
    p: float
    ci: tuple[float, float]
    p_holm: float
    n: tuple[int, int]

    def as_dict(self, scale: float = 1.0) -> dict:
        """JSON-ready, differences multiplied by ``scale`` (100: points)."""
        return {"diff": scale * self.diff, "se": scale * self.se, "df": self.df, "p": self.p, "p_holm": self.p_holm,
                "ci95": [scale * self.ci[0], scale * self.ci[1]], "n": list(self.n)}


def _arrays(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or len(y) < 2:
        raise ValueError(f"a t-test needs at least 2 values per group (got {len(x)} and {len(y)})")
    return x, y


def welch(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Comparison:
    """Welch's two-sample t-test of mean(a) = mean(b) (two-sided), with the ``level`` interval of the difference."""
    from scipy.stats import t as t_dist

    x, y = _arrays(a, b)
    va, vb = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    diff, se = float(x.mean() - y.mean()), float((va + vb) ** 0.5)
    if se == 0:  # identical constant groups: nothing to test
        p = 1.0 if diff == 0 else 0.0
        return Comparison(diff, 0.0, float(len(x) + len(y) - 2), p, (diff, diff), p, (len(x), len(y)))
    df = float((va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1)))
    p = float(2 * t_dist.sf(abs(diff) / se, df))
    half = float(t_dist.ppf(0.5 + level / 2, df)) * se
    return Comparison(diff, se, df, p, (diff - half, diff + half), p, (len(x), len(y)))


def holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate)."""
    order = sorted(p_values, key=p_values.get)
    m, running, out = len(order), 0.0, {}
    for i, key in enumerate(order):
        running = max(running, min(1.0, (m - i) * p_values[key]))
        out[key] = running
    return out


def compare_family(groups: dict[str, Sequence[float]], reference: str, level: float = 0.95) -> dict[str, Comparison]:
    """Every group with 2+ values against ``reference`` by Welch's test, Holm-adjusted over exactly those
    comparisons (the family a table states: "every row vs ``reference``")."""
    if reference not in groups or len(groups[reference]) < 2:
        return {}
    raw = {name: welch(g, groups[reference], level) for name, g in groups.items()
           if name != reference and len(g) >= 2}
    adjusted = holm({name: c.p for name, c in raw.items()})
    return {name: Comparison(c.diff, c.se, c.df, c.p, c.ci, adjusted[name], c.n) for name, c in raw.items()}


def tost(a: Sequence[float], b: Sequence[float], margin: float) -> float:
    """Two one-sided Welch tests of |mean(a) - mean(b)| < ``margin``: the p of equivalence (small: the two are
    level within the margin; large: not shown level, which is not "different" either)."""
    from scipy.stats import t as t_dist

    c = welch(a, b)
    if c.se == 0:
        return 0.0 if abs(c.diff) < margin else 1.0
    lower = t_dist.sf((c.diff + margin) / c.se, c.df)  # H0: diff <= -margin
    upper = t_dist.cdf((c.diff - margin) / c.se, c.df)  # H0: diff >= +margin
    return float(max(lower, upper))


def pooled_t_test(a: Sequence[float], b: Sequence[float], others: Sequence[Sequence[float]] = ()) -> float:
    """Two-sided p of mean(a) = mean(b), with one seed variance pooled over ``a``, ``b`` and every group in
    ``others`` (archs trained alike: their variances are the same seed noise), so the test has their degrees of
    freedom; Welch's test uses only a's and b's."""
    from scipy.stats import t as t_dist

    groups = [np.asarray(g, dtype=float) for g in (a, b, *others) if len(g) > 1]
    df = sum(len(g) - 1 for g in groups)
    sp2 = sum(((g - g.mean()) ** 2).sum() for g in groups) / df
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    t = (a.mean() - b.mean()) / (sp2 * (1 / len(a) + 1 / len(b))) ** 0.5
    return float(2 * t_dist.sf(abs(t), df))


def detectable_difference(sd: float, n: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference of two means of ``n`` seeds each (seed s.d. ``sd`` in both) that a two-sided
    t-test at ``alpha`` finds with probability ``power`` (exact, by the noncentral t distribution)."""
    from scipy.optimize import brentq
    from scipy.stats import nct
    from scipy.stats import t as t_dist

    if n < 2:
        raise ValueError(f"{n} seed(s): a t-test needs at least 2 per group")
    if sd <= 0:
        return 0.0
    df = 2 * n - 2
    crit = float(t_dist.ppf(1 - alpha / 2, df))
    scale = sd * (2 / n) ** 0.5

    def shortfall(delta: float) -> float:
        nc = delta / scale
        far_tail = float(np.nan_to_num(nct.cdf(-crit, df, nc)))  # scipy gives nan where it underflows
        return float(nct.sf(crit, df, nc)) + far_tail - power

    return float(brentq(shortfall, 0.0, 20 * scale))  # noncentrality 20: power ~1 at any df >= 2


def verdict(c: Comparison, a: Sequence[float] | None = None, b: Sequence[float] | None = None, *,
            margin: float | None = None, alpha: float = ALPHA) -> str:
    """What a page may say of ``c``: ``higher`` / ``lower`` (Holm-adjusted p < ``alpha``), ``level`` (given the raw
    groups ``a``, ``b`` and a ``margin``: TOST p < ``alpha``), else ``not separable``."""
    if c.p_holm < alpha:
        return "higher" if c.diff > 0 else "lower"
    if margin is not None and a is not None and b is not None and tost(a, b, margin) < alpha:
        return "level"
    return "not separable"


def cell(c: Comparison | None, scale: float = 100.0, alpha: float = ALPHA) -> str:
    """A table cell for ``c``: the difference (x ``scale``) and its Holm-adjusted p, bold when p < ``alpha``."""
    if c is None:
        return "-"
    text = f"{scale * c.diff:+.2f} (p {c.p_holm:.2g})"
    return f"**{text}**" if c.p_holm < alpha else text
