"""``nas-kd bench dna-search``: time the exact DNA search on a whole space, and check it against
brute-force enumeration on a reduced space (a few candidates per stage), where enumeration is feasible.

Stage scores are random (seeded): the search's cost and exactness do not depend on where the
scores come from, and real tables need a trained blockwise supernet.
"""
from __future__ import annotations

import itertools
import random
from typing import Any

import numpy as np

import search_spaces
from nas_kd.dna.knapsack import best_under, search, space_tables, to_arch
from nas_kd.provenance import Stopwatch


def bench_dna_search(space_name: str = "mbv2", k: int = 5, reduced_per_stage: int = 10, budgets: int = 12,
                     seed: int = 0) -> dict[str, Any]:
    space = search_spaces.get(space_name)
    rng = np.random.default_rng(seed)
    watch = Stopwatch()
    cands = [space.stage_candidates(i) for i in range(1, len(space.stages) + 1)]
    scores = [rng.random(len(c)) for c in cands]
    tables, cin, fixed = space_tables(space, scores, cands)
    table_seconds = watch.seconds()
    watch = Stopwatch()
    results = search(tables, cin, fixed, k=k)
    search_seconds = watch.seconds()
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    checked = 0
    for b in np.linspace(lo, hi, 5):
        for r in best_under(results, b, 1):
            assert space.flops(to_arch(tables, r)) == r["flops"] <= b
            checked += 1

    # brute force on a reduced space: the same search must find the same best archs
    pick = random.Random(seed)
    sub = [sorted(pick.sample(range(len(c)), min(reduced_per_stage, len(c)))) for c in cands]
    r_cands = [[c[j] for j in s] for c, s in zip(cands, sub)]
    r_scores = [sc[s] for sc, s in zip(scores, sub)]
    r_tables, cin, fixed = space_tables(space, r_scores, r_cands)
    watch = Stopwatch()
    r_results = search(r_tables, cin, fixed, k=k)
    reduced_search_seconds = watch.seconds()
    watch = Stopwatch()
    every = []
    for combo in itertools.product(*(range(len(c)) for c in r_cands)):
        arch = {}
        for cs, j in zip(r_cands, combo):
            arch.update(cs[j])
        every.append((space.flops(arch), float(sum(s[j] for s, j in zip(r_scores, combo)))))
    brute_seconds = watch.seconds()
    flops_all = sorted({f for f, _ in every})
    mismatches, compared = 0, 0
    for b in flops_all[:: max(1, len(flops_all) // budgets)]:
        want = sorted(s for f, s in every if f <= b)[:k]
        got = [r["score"] for r in best_under(r_results, b, k)]
        compared += 1
        mismatches += not np.allclose(want, got)
    return {
        "space": space_name, "space_size": space.size(), "k": k,
        "table_seconds": round(table_seconds, 3), "search_seconds": round(search_seconds, 3),
        "kept_partial_archs": len(results), "archs_checked_against_space_flops": checked,
        "reduced": {"candidates_per_stage": reduced_per_stage, "archs_enumerated": len(every),
                    "search_seconds": round(reduced_search_seconds, 4), "brute_force_seconds": round(brute_seconds, 2),
                    "budgets_compared": compared, "budgets_with_different_top_k": mismatches},
    }
