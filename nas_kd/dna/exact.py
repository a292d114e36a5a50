"""The exact DNA search from ranking tables: best archs under FLOPs budgets and the whole Pareto front."""
from __future__ import annotations

from typing import Any

import numpy as np

import search_spaces
from nas_kd.dna.knapsack import best_under, pareto_layers, search, space_tables, to_arch
from nas_kd.dna.score import DnaScorer
from nas_kd.flops import count_flops
from nas_kd.provenance import Stopwatch
from nas_kd.subnet import StaticNet


def exact_search(tables: dict[str, Any], budgets_flops: list[float], k: int = 5, metric: str = "rel_l1",
                 normalise: str = "stage_mean", check_fvcore: bool = True) -> dict[str, Any]:
    """Top-``k`` archs (lowest summed stage score) under each budget, exactly, plus the Pareto front."""
    space = search_spaces.from_meta(tables)
    for b in budgets_flops:
        space.check_budget(b)
    scorer = DnaScorer(tables, metric, normalise)
    cands = [[c["cand"] for c in st["candidates"]] for st in tables["stages"]]
    scores = [[scorer.stages[i][scorer.key(c)] for c in cs] for i, cs in enumerate(cands)]
    stage_tables, cin, fixed = space_tables(space, scores, cands)
    watch = Stopwatch()
    results = search(stage_tables, cin, fixed, k=k)
    seconds = watch.seconds()
    fl = np.array([r["flops"] for r in results])
    sc = np.array([r["score"] for r in results])
    front = [results[i] for i in sorted(pareto_layers(fl, sc, 1), key=lambda i: fl[i])]
    by_budget = {}
    for b in budgets_flops:
        top = []
        for r in best_under(results, b, k):
            arch = to_arch(stage_tables, r)
            entry = {"arch": arch, "score": r["score"], "flops": r["flops"]}
            if check_fvcore and not top:
                entry["fvcore_flops"] = count_flops(StaticNet(space.spec(arch)), (1, *space.input_shape))
            top.append(entry)
        by_budget[f"{b / 1e6:.3f}"] = top
    return {
        "space": space.name, "space_size": space.size(), "metric": metric, "normalise": normalise, "k": k,
        "search_seconds": round(seconds, 4), "kept_partial_archs": len(results),
        "by_budget": by_budget,
        "pareto_front": [{"mflops": r["flops"] / 1e6, "score": r["score"]} for r in front],
    }
