"""An architecture's DNA score from the per-stage tables: normalise each stage, then combine.

Stage losses live on different scales (stage 1 features are not stage 4 features), so each stage's
candidate scores are divided by that stage's mean candidate score (``stage_mean``) before they are
summed (which makes the exact knapsack search possible). Lower is better. (A fitted combination of
evaluator scores, DONNA-style, is :mod:`nas_kd.rankcorr.fitted`.)
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from nas_kd.errors import UnknownName, UserError

NORMALISATIONS = ("stage_mean", "none")


def load_tables(path: str | Path) -> dict[str, Any]:
    """A ranking written by :func:`nas_kd.dna.ranking.rank_stages`."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a readable blockwise ranking ({e}); make one with nas-kd dna-rank") from None


class DnaScorer:
    """Per-stage candidate scores (``metric`` of a ranking table) for whole architectures."""

    def __init__(self, tables: dict[str, Any], metric: str = "rel_l1", normalise: str = "stage_mean") -> None:
        if metric not in tables["scores"]:
            raise UserError(f"dna metric {metric!r} is not one of {tables['scores']}")
        if normalise not in NORMALISATIONS:
            raise UserError(f"dna normalisation {normalise!r} is not one of {NORMALISATIONS}")
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
                raise UnknownName(f"stage{i} candidate {part} is not in the ranking table")
            out.append(table[key])
        return out

    def score(self, arch: dict[str, Any]) -> float:
        """The sum of the stages' normalised scores (lower is better)."""
        return float(sum(self.stage_scores(arch)))
