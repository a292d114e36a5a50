import itertools
import random

import numpy as np
import pytest

import search_spaces
from nas_kd.dna.knapsack import (
    StageTable,
    best_under,
    pareto_layers,
    search,
    space_tables,
    to_arch,
)


def random_tables(rng, n_stages):
    widths = [8, 16]
    tables = []
    for _ in range(n_stages):
        n = rng.randint(2, 6)
        width = np.array([rng.choice(widths) for _ in range(n)])
        flops = {cin: np.array([rng.randint(1, 50) + cin for _ in range(n)]) for cin in widths}
        tables.append(StageTable([{} for _ in range(n)], np.array([rng.random() for _ in range(n)]), width, flops))
    return tables


def brute(tables, first_cin, fixed):
    out = []
    for combo in itertools.product(*(range(len(t.score)) for t in tables)):
        cin, f, s = first_cin, 0, 0.0
        for t, c in zip(tables, combo):
            f += int(t.flops[cin][c])
            s += float(t.score[c])
            cin = int(t.width[c])
        out.append((f + fixed[cin], s, list(combo)))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_exact_against_brute_force(seed):
    rng = random.Random(seed)
    tables = random_tables(rng, rng.choice([3, 4]))
    fixed = {8: 5, 16: 9}
    k = 3
    results = search(tables, 8, fixed, k=k)
    every = brute(tables, 8, fixed)
    for budget in sorted({f for f, _, _ in every})[:: max(1, len(every) // 15)]:
        want = sorted((s, f) for f, s, _ in every if f <= budget)[:k]
        got = [(r["score"], r["flops"]) for r in best_under(results, budget, k)]
        assert [round(s, 12) for s, _ in got] == [round(s, 12) for s, _ in want]
    for r in results:  # back-pointers rebuild an arch with the stated cost
        match = [e for e in every if e[2] == r["cands"]]
        assert match and match[0][0] == r["flops"] and match[0][1] == pytest.approx(r["score"])


def test_pareto_layers():
    f = np.array([1, 2, 3, 1, 2])
    s = np.array([3.0, 2.0, 1.0, 4.0, 2.5])
    assert sorted(pareto_layers(f, s, 1).tolist()) == [0, 1, 2]
    assert sorted(pareto_layers(f, s, 2).tolist()) == [0, 1, 2, 3, 4]


def test_space_tables_price_archs_like_the_space():
    space = search_spaces.get("resnet")
    rng = np.random.default_rng(0)
    scores = [rng.random(len(space.stage_candidates(i))) for i in range(1, 5)]
    tables, cin, fixed = space_tables(space, scores)
    results = search(tables, cin, fixed, k=1)
    assert len(results) > 10
    for r in results[:: max(1, len(results) // 10)]:
        arch = to_arch(tables, r)
        assert space.flops(arch) == r["flops"]
    lo = space.flops(space.min_arch())
    assert results[0]["flops"] >= lo


def test_space_tables_on_latency_price_archs_like_the_latency_table():
    from nas_kd.latency import build_table, calibrated

    space = search_spaces.get("resnet", input_shape=(1, 8, 8))
    table = build_table(space, repeats=1, warmup=0, min_seconds=0, calibration_archs=0, show_progress=False)
    table["calibration"] = {"scale": 1.5, "offset": 0.25}
    rng = np.random.default_rng(1)
    scores = [rng.random(len(space.stage_candidates(i))) for i in range(1, 5)]
    tables, cin, fixed = space_tables(space, scores, latency_table=table)
    results = search(tables, cin, fixed, k=1)
    for r in results[:: max(1, len(results) // 10)]:
        assert calibrated(table, r["flops"] / 1e6) == pytest.approx(space.latency(to_arch(tables, r), table), abs=1e-5)
