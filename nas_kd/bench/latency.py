"""``nas-kd bench latency``: how well per-block latency tables predict measured end-to-end latency."""
from __future__ import annotations

import itertools
import random
from typing import Any

import search_spaces
from nas_kd.latency import MIN_SECONDS, RUNTIMES, build_table, check_predictions


def bench_latency(spaces: list[str], num_archs: int = 50, threads: int = 2, batch_sizes: tuple[int, ...] = (1, 32),
                  seed: int = 0, show_progress: bool = True, runtimes: tuple[str, ...] = RUNTIMES,
                  min_seconds: float = MIN_SECONDS) -> dict[str, Any]:
    """Per space, runtime (:data:`~nas_kd.latency.RUNTIMES`) and batch size: build a table on this machine, then predict and
    time ``num_archs`` random archs (their own seed: none is a calibration arch of the table), and time them again
    in a fresh process (the test-retest figures beside the predictor's)."""
    out: dict[str, Any] = {"num_archs": num_archs, "threads": threads, "seed": seed, "spaces": {}}
    for name in spaces:
        space = search_spaces.get(name)
        rng = random.Random(f"latency-bench-{seed}")
        archs = [space.sample(rng) for _ in range(num_archs)]
        by_runtime = out["spaces"][name] = {}
        for runtime, bs in itertools.product(runtimes, batch_sizes):
            table = build_table(space, batch_size=bs, threads=threads, show_progress=show_progress, runtime=runtime,
                                min_seconds=min_seconds)
            check = check_predictions(space, table, archs, retest=True)
            by_runtime.setdefault(runtime, {})[f"batch_{bs}"] = {
                **{k: v for k, v in check.items() if k != "archs"},
                "table_build_seconds": table["build_seconds"], "table_entries": len(table["blocks_ms"]),
                "calibration": table["calibration"], "machine": table["machine"], "torch": table["torch"],
                "archs": [{k: r[k] for k in ("mflops", "predicted_ms", "measured_ms", "retest_ms")} for r in check["archs"]],
            }
    return out
