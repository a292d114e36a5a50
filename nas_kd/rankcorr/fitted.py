"""A fitted combination of evaluator scores (in the spirit of DONNA's fitted accuracy predictor),
scored only by leave-one-band-out cross-validation.

Features per arch are the evaluators' scores and FLOPs / params, each z-scored within its band (so a
band's absolute level carries no information); the target is the ground truth z-scored within its
band. The model is ridge regression (closed form). Predictions for a fold come from a model fit on
the other folds only; :func:`cross_validated` never returns a prediction for an arch it was fit on.
"""
from __future__ import annotations

import numpy as np


def zscore(v: np.ndarray) -> np.ndarray:
    """Column-wise (x - mean) / std; constant columns become 0."""
    sd = v.std(axis=0)
    return (v - v.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def ridge_fit(x: np.ndarray, y: np.ndarray, lam: float = 1.0) -> np.ndarray:
    """Weights (with the intercept last) minimising ||[x 1] w - y||^2 + lam ||w_no_intercept||^2."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = lam * np.eye(xa.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(xa.T @ xa + reg, xa.T @ y)


def ridge_predict(w: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))]) @ w


def cross_validated(features: dict[str, np.ndarray], truth: dict[str, np.ndarray], lam: float = 1.0) -> dict[str, np.ndarray]:
    """Leave-one-group-out predictions: ``features[g]`` is (archs, k) raw scores of group g (a band),
    ``truth[g]`` its ground truth; returns ``{g: predictions}``, each from a model fit on the other groups."""
    groups = list(features)
    if len(groups) < 2:
        raise ValueError("cross-validation needs at least two groups (bands or folds)")
    zx = {g: zscore(np.asarray(features[g], dtype=float)) for g in groups}
    zy = {g: zscore(np.asarray(truth[g], dtype=float)[:, None])[:, 0] for g in groups}
    out = {}
    for g in groups:
        train = [h for h in groups if h != g]
        w = ridge_fit(np.vstack([zx[h] for h in train]), np.concatenate([zy[h] for h in train]), lam)
        out[g] = ridge_predict(w, zx[g])
    return out
