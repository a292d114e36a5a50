"""Search and export: ``search``, ``export``, and DNA's ``dna-rank`` / ``dna-search``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas_kd.cli.common import recipe_args
from nas_kd.errors import UserError
from nas_kd.evaluators import EVALUATORS
from nas_kd.latency import RUNTIMES
from nas_kd.recipe_checks import load_checked
from nas_kd.search.strategies import STRATEGIES
from nas_kd.typecheck import COUNT, FRACTION, NATURAL, POSITIVE


def _cmd_search(args: argparse.Namespace) -> None:
    from nas_kd.recipes import search

    overrides = list(args.overrides)
    for key, value in (("budget_mflops", args.budget_mflops), ("budget_ms", args.budget_ms),
                       ("latency_table", args.latency_table), ("evaluator", args.evaluator),
                       ("strategy", args.strategy), ("trials", args.trials), ("storage", args.storage),
                       ("checkpoint", args.checkpoint)):
        if value is not None:
            overrides.append(f"search.{key}={value}")
    result = search(load_checked(args.recipe, overrides), report_only=args.report)
    print(json.dumps({k: result[k] for k in ("budget_mflops", "budget_ms", "scored", "wall_seconds")}
                     | {"best_mflops": result["best"]["mflops"], "best_score": result["best"][result["evaluator"]]}
                     | {k: result[k] for k in ("best_predicted_latency_ms", "best_measured_latency_ms") if k in result},
                     indent=2))

def _cmd_export(args: argparse.Namespace) -> None:
    from nas_kd.recipes import export

    checkpoint, arch_arg, recipe_path = args.checkpoint, args.arch, args.recipe
    if args.run:
        run = Path(args.run)
        if not (run / "search.json").exists():
            raise UserError(f"--run {run}: no search.json (is it a nas-kd search run directory?)")
        checkpoint = checkpoint or json.loads((run / "search.json").read_text())["checkpoint"]
        arch_arg = str(run / "best_arch.json") if arch_arg in (None, "best") else arch_arg
        recipe_path = recipe_path or str(run / "config.yaml")
    if not checkpoint:
        raise UserError("export needs --checkpoint (a supernet) or --run (a search run directory)")
    recipe = load_checked(recipe_path, args.overrides) if recipe_path else None
    exported = export(checkpoint, arch_arg or "max", args.out, recipe,
                              recalibrate_batches=args.recalibrate_batches, finetune_epochs=args.finetune_epochs,
                              torchscript=args.torchscript, onnx=args.onnx)
    print(json.dumps(exported, indent=2))

def _cmd_dna_rank(args: argparse.Namespace) -> None:
    from nas_kd.recipes import rank_stages

    recipe = load_checked(args.recipe, args.overrides)
    result = rank_stages(recipe, args.checkpoint, args.out)
    print(json.dumps({"out": args.out, "stage_seconds": result["stage_seconds"], "wall_seconds": result["wall_seconds"]}))

def _cmd_dna_search(args: argparse.Namespace) -> None:
    from nas_kd.dna.exact import exact_search
    from nas_kd.dna.score import load_tables
    from nas_kd.provenance import Stopwatch, origin, write_result

    started, watch = origin(), Stopwatch()
    tables = load_tables(args.tables)
    budgets = [b * 1e6 for b in args.budget_mflops]
    if args.budget_fraction:
        import search_spaces

        space = search_spaces.from_meta(tables)
        budgets += [f * space.flops(space.max_arch()) for f in args.budget_fraction]
    from nas_kd.latency import load_table

    latency_table = load_table(args.latency_table) if args.latency_table else None
    if not budgets and not args.budget_ms:
        raise UserError("dna-search: give --budget-mflops, --budget-fraction or --budget-ms")
    result = exact_search(tables, budgets, k=args.k, budgets_ms=args.budget_ms, latency_table=latency_table,
                          runtime=args.runtime)
    print(f"exact search over {result['space_size']:.3g} architectures of {result['space']} "
          f"in {result['search_seconds']:.3f} s", file=sys.stderr)
    result = {"tables": args.tables, **result}
    if args.out:
        result = write_result(args.out, result, watch.seconds(), started)
    print(json.dumps({b: v[0] | {"arch": "..."} for b, v in result["by_budget"].items() if v}, indent=2))


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("search", help="search the best subnet under a FLOPs budget with an evaluator and a strategy")
    recipe_args(p)
    p.add_argument("--budget-mflops", type=POSITIVE, help="FLOPs budget in MFLOPs (default: the recipe's)")
    p.add_argument("--budget-ms", type=POSITIVE, help="latency budget in ms, predicted from --latency-table (with or "
                                                       "without a FLOPs budget)")
    p.add_argument("--latency-table", help="a table from nas-kd latency-table (this machine)")
    p.add_argument("--evaluator", help=f"evaluator to optimise ({', '.join(EVALUATORS.available())})")
    p.add_argument("--strategy", help=f"search strategy ({', '.join(STRATEGIES.available())})")
    p.add_argument("--trials", type=COUNT, help="distinct archs to score")
    p.add_argument("--storage", help="Optuna RDB URL shared by several workers (default: SQLite in the run dir)")
    p.add_argument("--checkpoint", help="trained supernet checkpoint (default: the recipe's search.checkpoint)")
    p.add_argument("--report", action="store_true", help="score nothing: rewrite the outputs from the shared "
                                                         "Optuna study (--storage), the result of all its workers")
    p.set_defaults(func=_cmd_search)

    p = sub.add_parser("export", help="export a subnet of a trained supernet as a standalone model directory")
    p.add_argument("--checkpoint", help="supernet checkpoint (nas_kd format); default with --run: the search's")
    p.add_argument("--run", help="a 'nas-kd search' run directory: its supernet, best arch and recipe")
    p.add_argument("--arch", help="'best' (with --run), 'max', 'min' or a JSON file with an arch (or {'arch': ...})")
    p.add_argument("--finetune-epochs", type=NATURAL, default=0,
                   help="fine-tune the exported subnet this many epochs (with the recipe's distill terms)")
    p.add_argument("--out", required=True, help="directory to write arch.json, weights.pt (and model.ts)")
    p.add_argument("--torchscript", action="store_true", help="also write a TorchScript model.ts")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx, checked against PyTorch with onnxruntime "
                                                       "(needs the onnx extra)")
    p.add_argument("--recalibrate-batches", type=NATURAL, default=0,
                   help="recalibrate BatchNorm on this many training batches of --recipe's data first")
    recipe_args(p, required=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("dna-rank", help="score every candidate of every stage of a blockwise supernet")
    recipe_args(p)
    p.add_argument("--checkpoint", required=True, help="blockwise supernet checkpoint (train-supernet, mode blockwise)")
    p.add_argument("--out", required=True, help="ranking tables JSON to write")
    p.set_defaults(func=_cmd_dna_rank)

    p = sub.add_parser("dna-search", help="exact search over the whole space from blockwise ranking tables")
    p.add_argument("--tables", required=True, help="ranking tables (nas-kd dna-rank)")
    p.add_argument("--budget-mflops", type=POSITIVE, nargs="*", default=[], help="FLOPs budgets in MFLOPs")
    p.add_argument("--budget-fraction", type=FRACTION, nargs="*", default=[], help="budgets as fractions of the max FLOPs")
    p.add_argument("--budget-ms", type=POSITIVE, nargs="*", default=[],
                   help="latency budgets in ms, predicted from --latency-table (instead of FLOPs budgets)")
    p.add_argument("--latency-table", help="a table from nas-kd latency-table (this machine)")
    p.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0], help="what the student runs with (the table's)")
    p.add_argument("--k", type=COUNT, default=5, help="architectures returned per budget")
    p.add_argument("--out", help="result JSON to write")
    p.set_defaults(func=_cmd_dna_search)
