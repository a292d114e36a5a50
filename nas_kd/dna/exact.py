"""The exact DNA search from ranking tables: best archs under FLOPs or latency budgets and the whole Pareto front."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

import search_spaces
from nas_kd.dna.knapsack import NS_PER_MS, best_under, pareto_layers, search, space_tables, to_arch
from nas_kd.dna.score import DnaScorer
from nas_kd.flops import count_flops
from nas_kd.provenance import Stopwatch
from nas_kd.subnet import StaticNet


def exact_search(tables: dict[str, Any], budgets_flops: list[float], k: int = 5, metric: str = "rel_l1",
                 normalise: str = "stage_mean", check_fvcore: bool = True, budgets_ms: list[float] | None = None,
                 latency_table: dict[str, Any] | None = None, runtime: str = "torch") -> dict[str, Any]:
    """Top-``k`` archs (lowest summed stage score) under each budget, exactly, plus the Pareto front.

    Budgets are FLOPs, or latencies (``budgets_ms``, predicted from ``latency_table``; the knapsack then runs
    on the table's times): one kind per search, since the exact search bounds one cost. Each latency budget's
    best arch is also timed here."""
    from nas_kd.errors import UserError
    from nas_kd.latency import measured_ms, predict_ms, require_here, require_match, summed_budget

    space = search_spaces.from_meta(tables)
    budgets_ms = budgets_ms or []
    if budgets_ms and budgets_flops:
        raise UserError("the exact search bounds one cost: give FLOPs budgets or latency budgets, not both")
    if budgets_ms and latency_table is None:
        raise UserError("latency budgets need a latency table (nas-kd latency-table, then --latency-table)")
    if latency_table is not None:
        require_match(space, latency_table)
        require_here(latency_table, runtime)
    for b in budgets_flops:
        space.check_budget(b)
    on_latency = bool(budgets_ms)
    scorer = DnaScorer(tables, metric, normalise)
    cands = [[c["cand"] for c in st["candidates"]] for st in tables["stages"]]
    scores = [[scorer.stages[i][scorer.key(c)] for c in cs] for i, cs in enumerate(cands)]
    stage_tables, cin, fixed = space_tables(space, scores, cands, latency_table if on_latency else None)
    watch = Stopwatch()
    results = search(stage_tables, cin, fixed, k=k)
    seconds = watch.seconds()
    fl = np.array([r["flops"] for r in results])
    sc = np.array([r["score"] for r in results])
    front = [results[i] for i in sorted(pareto_layers(fl, sc, 1), key=lambda i: fl[i])]
    by_budget = {}
    for b in budgets_ms or budgets_flops:
        top = []
        for r in best_under(results, math.floor(summed_budget(latency_table, b) * NS_PER_MS) if on_latency else b, k):
            arch = to_arch(stage_tables, r)
            entry = {"arch": arch, "score": r["score"], "flops": space.flops(arch)}
            if latency_table is not None:
                entry["latency_ms"] = predict_ms(space, arch, latency_table)
            if check_fvcore and not top:
                entry["fvcore_flops"] = count_flops(StaticNet(space.spec(arch)), (1, *space.input_shape))
            if on_latency and not top:
                entry["measured_latency_ms"] = measured_ms(space, [arch], latency_table)[0]
            top.append(entry)
        by_budget[f"{b:g}ms" if on_latency else f"{b / 1e6:.3f}"] = top
    cost = (lambda r: {"latency_ms": calibrated_ms(latency_table, r["flops"])}) if on_latency else \
        (lambda r: {"mflops": r["flops"] / 1e6})
    return {
        "space": space.name, "space_size": space.size(), "metric": metric, "normalise": normalise, "k": k,
        "cost": "latency" if on_latency else "flops", "search_seconds": round(seconds, 4),
        "kept_partial_archs": len(results), "by_budget": by_budget,
        "pareto_front": [{**cost(r), "score": r["score"]} for r in front],
    }


def calibrated_ms(table: dict[str, Any], summed_ns: int) -> float:
    """A knapsack latency cost (uncalibrated nanoseconds) as a predicted latency in ms."""
    from nas_kd.latency import calibrated

    return calibrated(table, summed_ns / NS_PER_MS)
