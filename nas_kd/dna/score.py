"""An architecture's DNA score from the per-stage tables: normalise each stage, then combine.

Stage losses live on different scales (stage 1 features are not stage 4 features), so each stage's
candidate scores are divided by that stage's mean candidate score (``stage_mean``) before they are
combined: by sum (default, what makes the exact knapsack search possible), by product, or by a
linear model fitted on a few stand-alone-trained archs (DONNA-style). Lower is better.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

NORMALISATIONS = ("stage_mean", "none")


class DnaScorer:
    """Per-stage candidate scores (``metric`` of a ranking table) for whole architectures."""

    def __init__(self, tables: dict[str, Any], metric: str = "rel_l1", normalise: str = "stage_mean") -> None:
        if metric not in tables["scores"]:
            raise ValueError(f"dna metric {metric!r} is not one of {tables['scores']}")
        if normalise not in NORMALISATIONS:
            raise ValueError(f"dna normalisation {normalise!r} is not one of {NORMALISATIONS}")
        self.metric, self.normalise = metric, normalise
        self.stages: list[dict[str, float]] = []
        for st in tables["stages"]:
            values = {self.key(c["cand"]): c[metric] for c in st["candidates"]}
            scale = float(np.mean(list(values.values()))) if normalise == "stage_mean" else 1.0
            self.stages.append({k: v / scale for k, v in values.items()})

    @staticmethod
    def key(partial: dict[str, Any]) -> str:
        return json.dumps(partial, sort_keys=True)

    def stage_scores(self, arch: dict[str, Any]) -> list[float]:
        """The normalised score of each stage of a canonical ``arch``."""
        out = []
        for i, table in enumerate(self.stages, start=1):
            part = {k: v for k, v in arch.items() if k.split(".")[0] == f"stage{i}"}
            key = self.key(part)
            if key not in table:
                raise KeyError(f"stage{i} candidate {part} is not in the ranking table")
            out.append(table[key])
        return out

    def score(self, arch: dict[str, Any], combine: str = "sum", weights: np.ndarray | None = None) -> float:
        """Combined score (lower is better): ``sum``, ``product`` or ``linear`` (``weights`` from :func:`fit_linear`;
        the linear model predicts accuracy, so its negative is returned)."""
        s = self.stage_scores(arch)
        if combine == "sum":
            return float(sum(s))
        if combine == "product":
            return float(math.prod(s))
        if combine == "linear":
            if weights is None:
                raise ValueError("combine='linear' needs weights from fit_linear")
            return -float(np.dot(weights[:-1], s) + weights[-1])
        raise ValueError(f"dna combine {combine!r} is not one of: sum, product, linear")


def fit_linear(scorer: DnaScorer, archs: list[dict[str, Any]], accuracies: list[float]) -> np.ndarray:
    """Least-squares weights (one per stage, then a bias) predicting accuracy from stage scores (DONNA)."""
    x = np.array([scorer.stage_scores(a) + [1.0] for a in archs])
    w, *_ = np.linalg.lstsq(x, np.asarray(accuracies, float), rcond=None)
    return w
