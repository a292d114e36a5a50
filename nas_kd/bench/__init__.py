"""Benchmarks behind ``nas-kd bench NAME``, chosen from :data:`BENCHES`; each writes a JSON under ``results/``.

An entry takes the command's options (``spaces``, ``num_archs``, ...) and returns the payload to write
(with its command, commit and wall time), or ``None`` when it writes its own records (the method tables).
"""
from __future__ import annotations

import json
from typing import Any

from nas_kd.errors import UserError
from nas_kd.registry import Registry

BENCHES: Registry = Registry("benchmark")
DEFAULT_SPACES = ["mbv2", "resnet"]


@BENCHES.register("flops")
def _flops(opts: Any) -> dict:
    """the per-block cost table vs fvcore"""
    from nas_kd.bench.flops import bench_flops

    return bench_flops(opts.spaces or DEFAULT_SPACES, num_archs=opts.num_archs)


@BENCHES.register("supernet")
def _supernet(opts: Any) -> dict:
    """weight-sharing step cost"""
    from nas_kd.bench.supernet import bench_supernet

    return {"spaces": {s: bench_supernet(s, repeats=opts.repeats) for s in opts.spaces or DEFAULT_SPACES}}


@BENCHES.register("dna-search")
def _dna_search(opts: Any) -> dict:
    """exact search time, brute-force check"""
    from nas_kd.bench.dna_search import bench_dna_search

    return {"spaces": {s: bench_dna_search(s) for s in opts.spaces or ["mbv2"]}}


@BENCHES.register("evaluators")
def _evaluators(opts: Any) -> dict:
    """archs per minute"""
    from nas_kd.bench.evaluators import bench_evaluators
    from nas_kd.recipe_checks import load_checked

    recipe = load_checked(opts.recipe or "recipes/search_fmnist.yaml", opts.overrides)
    names = ["accuracy", "kl", "rdm", "cka", "diswot", "naswot", "synflow", "flops"] + (["dna"] if opts.dna_tables else [])
    return bench_evaluators(recipe, recipe.search.checkpoint, names, opts.num_archs, opts.dna_tables)


@BENCHES.register("latency")
def _latency(opts: Any) -> dict:
    """latency tables vs measured latency"""
    from nas_kd.bench.latency import bench_latency

    return bench_latency(opts.spaces or DEFAULT_SPACES, num_archs=opts.num_archs, threads=opts.threads,
                         batch_sizes=tuple(opts.batch_sizes))


def _table(opts: Any, name: str, run, show) -> None:
    if not opts.table:
        raise UserError(f"bench {name} needs --table (see recipes/)")
    summary = run(opts.table, rows=opts.rows, commit=opts.commit, report_only=opts.report)
    print(json.dumps({k: show(v) for k, v in summary["rows"].items()}, indent=2))


@BENCHES.register("distill")
def _distill(opts: Any) -> None:
    """the distillation method table"""
    from nas_kd.bench.distill import bench_distill

    _table(opts, "distill", bench_distill, lambda v: {"acc_mean": v["acc_mean"], "acc_std": v["acc_std"]})


@BENCHES.register("supernet-ablation")
def _supernet_ablation(opts: Any) -> None:
    """supernet training choices"""
    from nas_kd.bench.supernet_ablation import bench_supernet_ablation

    _table(opts, "supernet-ablation", bench_supernet_ablation, lambda v: {s: v[f"{s}_acc"] for s in ("max", "min", "median")})
