"""Exact search over every architecture of a staged space when stage scores add up.

An architecture's score is the sum of its stages' scores (lower is better: a distillation loss)
and its FLOPs (or latency, from a per-block latency table) are the stem and head plus each stage's, which depend on the stage's choices
and on the previous stage's width. That is a multiple-choice knapsack along a chain, solved
exactly by dynamic programming over (stage, width): for each width of stage i, keep the partial
architectures (stages 1..i) that are not dominated in (FLOPs, score) by k others of the same
width; extend each by every candidate of stage i+1, add the new stage's FLOPs for the actual
input width, and filter again. Keeping the first k Pareto layers keeps every partial solution that
k others do not dominate, so the best k architectures under any budget survive (k = 1: the Pareto
front, i.e. the best architecture for every budget, in one pass).

DNA's released traversal is not exact (it returned a worse arch in about a third of random cases);
this one is checked against brute-force enumeration in the tests and in ``nas-kd bench dna-search``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class StageTable:
    """One stage's candidates: their choices, score (lower is better), width and FLOPs per input width."""

    cands: list[dict[str, Any]]
    score: np.ndarray  # (n,)
    width: np.ndarray  # (n,) output width of each candidate
    flops: dict[int, np.ndarray]  # input width -> (n,) FLOPs of each candidate fed that many channels


@dataclass
class Partial:
    """Partial architectures ending with a given width: FLOPs, score and back-pointers."""

    flops: np.ndarray
    score: np.ndarray
    cand: np.ndarray  # candidate index in the stage
    parent: np.ndarray  # index into the previous stage's Partial of width ``prev_width[i]``
    prev_width: np.ndarray


def pareto_layers(flops: np.ndarray, score: np.ndarray, k: int) -> np.ndarray:
    """Indices of the first ``k`` Pareto layers of points minimising both FLOPs and score.

    One sort by (FLOPs, score); removing a layer keeps the rest in that order, so each further
    layer is one running minimum over what is left.
    """
    order = np.lexsort((score, flops))  # FLOPs up, then score up
    kept = []
    for _ in range(k):
        if not len(order):
            break
        s = score[order]
        best_before = np.minimum.accumulate(np.concatenate([[np.inf], s[:-1]]))
        front = s < best_before
        kept.append(order[front])
        order = order[~front]
    return np.concatenate(kept) if kept else order


def search(tables: list[StageTable], first_cin: int, fixed_flops: dict[int, int], k: int = 1) -> list[dict[str, Any]]:
    """Every architecture on the first ``k`` Pareto layers of (total FLOPs, total score), by FLOPs.

    ``first_cin``: channels entering stage 1; ``fixed_flops``: last width -> stem + head FLOPs.
    Each result: ``{"flops", "score", "cands": [candidate index per stage]}``.
    """
    states: dict[int, Partial] = {first_cin: Partial(np.zeros(1, np.int64), np.zeros(1), np.zeros(1, np.int64),
                                                     np.zeros(1, np.int64), np.zeros(1, np.int64))}
    history: list[dict[int, Partial]] = []
    for table in tables:
        new: dict[int, Partial] = {}
        for w in np.unique(table.width).tolist():
            cands = np.nonzero(table.width == w)[0]
            fl, sc, ca, pa, pw = [], [], [], [], []
            for cin, part in states.items():
                f = part.flops[:, None] + table.flops[cin][cands][None, :]
                s = part.score[:, None] + table.score[cands][None, :]
                fl.append(f.ravel())
                sc.append(s.ravel())
                ca.append(np.broadcast_to(cands[None, :], f.shape).ravel())
                pa.append(np.broadcast_to(np.arange(len(part.flops))[:, None], f.shape).ravel())
                pw.append(np.full(f.size, cin))
            fl, sc = np.concatenate(fl), np.concatenate(sc)
            keep = pareto_layers(fl, sc, k)
            new[w] = Partial(fl[keep], sc[keep], np.concatenate(ca)[keep], np.concatenate(pa)[keep],
                             np.concatenate(pw)[keep])
        history.append(new)
        states = new
    # close with the stem and head, then keep the global first k layers
    fl = np.concatenate([p.flops + fixed_flops[w] for w, p in states.items()])
    sc = np.concatenate([p.score for p in states.values()])
    owner = np.concatenate([np.full(len(p.flops), w) for w, p in states.items()])
    local = np.concatenate([np.arange(len(p.flops)) for p in states.values()])
    results = []
    for i in pareto_layers(fl, sc, k):
        chain, w, j = [], int(owner[i]), int(local[i])
        for stage in range(len(tables) - 1, -1, -1):
            part = history[stage][w]
            chain.append(int(part.cand[j]))
            w, j = int(part.prev_width[j]), int(part.parent[j])
        results.append({"flops": int(fl[i]), "score": float(sc[i]), "cands": chain[::-1]})
    return sorted(results, key=lambda r: (r["flops"], r["score"]))


def best_under(results: list[dict[str, Any]], budget: float, k: int = 1) -> list[dict[str, Any]]:
    """The ``k`` lowest-score results within ``budget`` FLOPs (exact when ``search`` ran with at least this k)."""
    fits = [r for r in results if r["flops"] <= budget]
    return sorted(fits, key=lambda r: (r["score"], r["flops"]))[:k]


NS_PER_MS = 1_000_000


def space_tables(space, scores: list[np.ndarray], cands: list[list[dict]] | None = None,
                 latency_table: dict | None = None) -> tuple[list[StageTable], int, dict[int, int]]:
    """Tables of a :class:`search_spaces.StagedSpace` with per-stage ``scores`` (aligned with
    ``space.stage_candidates(i)`` unless ``cands`` is given), its stage-1 input width and fixed costs.

    The cost is FLOPs, or with ``latency_table`` the table's uncalibrated time in integer nanoseconds,
    rounded up so that an arch within a budget (rounded down) is within it by prediction too (the knapsack
    then bounds latency; :func:`nas_kd.latency.summed_budget` maps a budget onto it)."""
    from nas_kd.latency import fixed_ms, stage_ms

    def stage_cost(i: int, cand: dict, cin: int) -> int:
        return space.stage_flops(i, cand, cin) if latency_table is None else \
            math.ceil(NS_PER_MS * stage_ms(space, latency_table, i, cand, cin))

    tables = []
    for i in range(1, len(space.stages) + 1):
        cs = cands[i - 1] if cands is not None else space.stage_candidates(i)
        cins = [space.stem_width] if i == 1 else sorted(space.stages[i - 2].widths)
        cost = {cin: np.array([stage_cost(i, c, cin) for c in cs], dtype=np.int64) for cin in cins}
        width = np.array([c[f"stage{i}.width"] for c in cs])
        tables.append(StageTable(cs, np.asarray(scores[i - 1], dtype=float), width, cost))
    fixed = {w: space.fixed_flops(w) if latency_table is None else math.ceil(NS_PER_MS * fixed_ms(latency_table, w))
             for w in space.stages[-1].widths}
    return tables, space.stem_width, fixed


def to_arch(tables: list[StageTable], result: dict[str, Any]) -> dict[str, Any]:
    """The full architecture of a search result."""
    arch: dict[str, Any] = {}
    for table, c in zip(tables, result["cands"]):
        arch.update(table.cands[c])
    return arch
