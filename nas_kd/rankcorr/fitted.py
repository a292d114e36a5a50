"""A fitted combination of evaluator scores (in the spirit of DONNA's fitted accuracy predictor),
scored only by cross-validation: leave-one-band-out across bands, k-fold inside a study's only band.

Features per arch are the evaluators' scores and FLOPs / params, each z-scored within its band (so a
band's absolute level carries no information); the target is the ground truth z-scored within its
band. The model is ridge regression (closed form). Predictions for a fold come from a model fit on
the other folds only; :func:`cross_validated` never returns a prediction for an arch it was fit on.
"""
from __future__ import annotations

import numpy as np

FOLDS = 4  # k of the k-fold cross-validation inside a single band


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


def k_fold(features: np.ndarray, truth: np.ndarray, k: int = FOLDS, seed: int = 0, lam: float = 1.0) -> np.ndarray:
    """k-fold predictions inside one group: the archs are split into ``k`` seeded folds and each fold's
    predictions come from a model fit on the other folds, its target z-scored with those folds' statistics
    alone (features are z-scored over the group: they carry no ground truth)."""
    zx = zscore(np.asarray(features, dtype=float))
    y = np.asarray(truth, dtype=float)
    if len(y) < 2 * k:
        raise ValueError(f"{k}-fold cross-validation needs at least {2 * k} archs, got {len(y)}")
    folds = np.array_split(np.random.default_rng(seed).permutation(len(y)), k)
    out = np.empty(len(y))
    for fold in folds:
        train = np.setdiff1d(np.arange(len(y)), fold)
        w = ridge_fit(zx[train], zscore(y[train][:, None])[:, 0], lam)
        out[fold] = ridge_predict(w, zx[fold])
    return out
