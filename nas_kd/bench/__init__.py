"""Benchmarks behind ``nas-kd bench NAME``, chosen from :data:`BENCHES`; each writes a JSON under ``results/``.

A :class:`Bench` declares its own command-line options (``options(parser)``) and runs on them (``run(args)``),
returning the payload to write (with its command, commit and wall time), or ``None`` when it writes its own
records (the method tables); its optional ``report(payload, json_path)`` writes a table or plot beside the JSON.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from nas_kd.registry import Registry
from nas_kd.typecheck import COUNT, FRACTION, NON_NEGATIVE

DEFAULT_SPACES = ["mbv2", "resnet"]


@dataclass(frozen=True)
class Bench:
    """One benchmark: ``help`` (one line), its ``options`` and its ``run``."""

    help: str
    options: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], dict[str, Any] | None]
    report: Callable[[dict[str, Any], Path], None] | None = None  # writes more beside the JSON (a table, a plot)


BENCHES: Registry[Bench] = Registry("benchmark")


def _spaces(default: list[str]) -> Callable[[argparse.ArgumentParser], None]:
    def options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--spaces", nargs="*", default=default, help=f"search spaces (default: {' '.join(default)})")

    return options


def _flops_options(p: argparse.ArgumentParser) -> None:
    _spaces(DEFAULT_SPACES)(p)
    p.add_argument("--num-archs", type=COUNT, default=100, help="archs per space")


def _flops(args: argparse.Namespace) -> dict:
    from nas_kd.bench.flops import bench_flops

    return bench_flops(args.spaces, num_archs=args.num_archs)


def _supernet_options(p: argparse.ArgumentParser) -> None:
    _spaces(DEFAULT_SPACES)(p)
    p.add_argument("--repeats", type=COUNT, default=10, help="timed steps per arch and model")


def _supernet(args: argparse.Namespace) -> dict:
    from nas_kd.bench.supernet import bench_supernet

    return {"spaces": {s: bench_supernet(s, repeats=args.repeats) for s in args.spaces}}


def _dna_search(args: argparse.Namespace) -> dict:
    from nas_kd.bench.dna_search import bench_dna_search

    return {"spaces": {s: bench_dna_search(s) for s in args.spaces}}


def _evaluators_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="recipes/search_fmnist.yaml", help="recipe: its supernet, teacher, data, probe")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value (repeatable)")
    p.add_argument("--num-archs", type=COUNT, default=8, help="archs scored by each evaluator")
    p.add_argument("--dna-tables", help="ranking tables, to include the dna evaluator")


def _evaluators(args: argparse.Namespace) -> dict:
    from nas_kd.bench.evaluators import bench_evaluators
    from nas_kd.recipe_checks import load_checked
    from nas_kd.recipes import job_of

    recipe = load_checked(args.recipe, args.overrides)
    names = ["accuracy", "kl", "rdm", "cka", "diswot", "naswot", "synflow", "flops"] + (["dna"] if args.dna_tables else [])
    return bench_evaluators(job_of(recipe), recipe.search.checkpoint, names, probe_size=recipe.search.probe_size,
                            bn_batches=recipe.search.bn_batches, num_archs=args.num_archs, dna_tables=args.dna_tables)


def _latency_options(p: argparse.ArgumentParser) -> None:
    _spaces(DEFAULT_SPACES)(p)
    p.add_argument("--num-archs", type=COUNT, default=100, help="held-out archs per space")
    p.add_argument("--threads", type=COUNT, default=2, help="torch threads")
    p.add_argument("--batch-sizes", type=COUNT, nargs="+", default=[1, 32], help="batch sizes")
    p.add_argument("--runtimes", nargs="+", default=["torch", "onnxruntime"], help="runtimes timed (torch, onnxruntime)")
    p.add_argument("--min-seconds", type=NON_NEGATIVE,
                   help="each table's timing, and each check of it, lasts at least this long (default: nas-kd "
                        "latency-table's)")


def _latency(args: argparse.Namespace) -> dict:
    from nas_kd.bench.latency import bench_latency

    return bench_latency(args.spaces, num_archs=args.num_archs, threads=args.threads,
                         batch_sizes=tuple(args.batch_sizes), runtimes=tuple(args.runtimes),
                         **({} if args.min_seconds is None else {"min_seconds": args.min_seconds}))


def _strategies_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tables", default="results/dna_tables_fmnist.json", help="DNA ranking tables (nas-kd dna-rank)")
    p.add_argument("--strategies", nargs="+", default=["random", "evolution", "optuna-tpe", "reinforce"],
                   help="strategies compared")
    p.add_argument("--budgets", type=FRACTION, nargs="+", default=[0.12, 0.25, 0.5],
                   help="budgets as fractions of the max arch's FLOPs")
    p.add_argument("--seeds", type=COUNT, default=5, help="seeds per strategy and budget")
    p.add_argument("--trials", type=COUNT, default=200, help="archs each search scores")


def _strategies(args: argparse.Namespace) -> dict:
    from nas_kd.bench.strategies import bench_strategies

    return bench_strategies(args.tables, args.strategies, args.budgets, args.seeds, args.trials)


def _table_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="the table file (rows x seeds), e.g. recipes/distill_table_fmnist.yaml")
    p.add_argument("--rows", nargs="*", help="only these rows")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.add_argument("--report", action="store_true", help="train nothing, rebuild the table from the records")
    p.add_argument("--time", action="store_true", help="train nothing: time every row's network now (a table with "
                   "latency runtimes; every row needs its first seed; keep the machine idle), then rebuild the table")


def _table(args: argparse.Namespace, run, show, **options: Any) -> None:
    summary = run(args.table, rows=args.rows, commit=args.commit, report_only=args.report, time_only=args.time,
                  **options)
    print(json.dumps({k: show(v) for k, v in summary["rows"].items()}, indent=2))


def _distill(args: argparse.Namespace) -> None:
    from nas_kd.bench.distill import bench_distill

    _table(args, bench_distill, lambda v: {"acc_mean": v["acc_mean"], "acc_std": v["acc_std"]})


def _datafree(args: argparse.Namespace) -> None:
    from nas_kd.bench.datafree import bench_datafree

    _table(args, bench_datafree, lambda v: {"acc_mean": v["acc_mean"], "acc_std": v["acc_std"],
                                            "num_images": v["num_images"]})


def _int8_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--table", required=True, help="the table file, e.g. recipes/int8_table_fmnist.yaml")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.add_argument("--report", action="store_true", help="train nothing, rebuild the table from the records")


def _int8(args: argparse.Namespace) -> None:
    from nas_kd.bench.int8 import bench_int8

    summary = bench_int8(args.table, commit=args.commit, report_only=args.report)
    print(json.dumps({"budgets": summary["budgets"], "comparisons": summary["comparisons"]}, indent=2))


def _supernet_ablation(args: argparse.Namespace) -> None:
    from nas_kd.bench.supernet_ablation import bench_supernet_ablation

    _table(args, bench_supernet_ablation, lambda v: {s: v[f"{s}_acc"] for s in ("max", "min", "median")},
           taus_study=args.taus_study)


def _supernet_ablation_options(p: argparse.ArgumentParser) -> None:
    _table_options(p)
    p.add_argument("--taus-study", help="a search-quality study recipe: also score each supernet's kl and rdm against "
                                        "its ground truth (Kendall tau per band)")


BENCHES.register("flops")(Bench("the per-block cost table vs fvcore", _flops_options, _flops))
BENCHES.register("supernet")(Bench("weight-sharing step cost", _supernet_options, _supernet))
BENCHES.register("dna-search")(Bench("exact search time, brute-force check", _spaces(["mbv2"]), _dna_search))
BENCHES.register("evaluators")(Bench("archs per minute", _evaluators_options, _evaluators))
def _strategies_report(payload: dict[str, Any], path: Path) -> None:
    from nas_kd.bench.strategies import write_report

    write_report(payload, path)


BENCHES.register("strategies")(Bench("regret vs trials where the optimum is known", _strategies_options, _strategies,
                                     _strategies_report))
BENCHES.register("latency")(Bench("latency tables vs measured latency", _latency_options, _latency))
BENCHES.register("distill")(Bench("the distillation method table", _table_options, _distill))
BENCHES.register("datafree")(Bench("data-free distillation vs real data at the same image count", _table_options,
                                   _datafree))
BENCHES.register("int8")(Bench("the int8-latency search against the FLOPs search at equal int8 latency",
                              _int8_options, _int8))
BENCHES.register("supernet-ablation")(Bench("supernet training choices", _supernet_ablation_options, _supernet_ablation))
