"""``nas-kd bench flops``: the per-block cost table vs fvcore, per architecture."""
from __future__ import annotations

import random
import statistics
import time
from typing import Any

import search_spaces
from nas_kd.export import export_subnet
from nas_kd.flops import count_flops
from nas_kd.supernet import Supernet


def bench_flops(spaces: list[str], num_archs: int = 50, seed: int = 0) -> dict[str, Any]:
    """Seconds per arch for ``space.flops`` (table) and for fvcore on the exported subnet; checks equality."""
    out: dict[str, Any] = {"num_archs": num_archs, "seed": seed, "spaces": {}}
    for name in spaces:
        space = search_spaces.get(name)
        net = Supernet(space)
        rng = random.Random(seed)
        archs = [space.sample(rng) for _ in range(num_archs)]
        subnets = [export_subnet(net, a) for a in archs]  # export time is not part of either count
        t0 = time.perf_counter()
        fv = [count_flops(s) for s in subnets]
        t_fv = (time.perf_counter() - t0) / num_archs
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            table = [space.flops(a) for a in archs]
        t_table = (time.perf_counter() - t0) / (num_archs * reps)
        out["spaces"][name] = {
            "fvcore_seconds_per_arch": t_fv,
            "table_seconds_per_arch": t_table,
            "speedup": t_fv / t_table,
            "all_equal": table == fv,
            "median_mflops": statistics.median(fv) / 1e6,
        }
    return out
