"""The ``nas-kd`` command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas_kd.recipe_checks import load_checked
from nas_kd.errors import UserError


def _number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse type: a finite ``kind`` within [low, high] (``low_open``: low excluded)."""
    import math

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if low_open else value < low)) \
                or (high is not None and value > high):
            bounds = [f"{'>' if low_open else '>='} {low}"] if low is not None else []
            bounds += [f"<= {high}"] if high is not None else []
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {' and '.join(bounds)}")
        return value

    return parse


POSITIVE = _number(float, 0, low_open=True)
FRACTION = _number(float, 0, 1, low_open=True)
COUNT = _number(int, 1)
NATURAL = _number(int, 0)


def _recipe_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--recipe", required=required, help="YAML recipe (see recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=2 (repeatable)")


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from nas_kd.train.standalone import train_teacher

    recipe = load_checked(args.recipe, args.overrides)
    _report(train_teacher(recipe, resume=args.resume), args.results, ("test_acc", "flops", "params"))


def _cmd_train_arch(args: argparse.Namespace) -> None:
    from nas_kd.train.standalone import train_arch

    recipe = load_checked(args.recipe, args.overrides)
    _report(train_arch(recipe, args.arch, resume=args.resume), args.results, ("test_acc", "mflops", "params"))


def _cmd_distill(args: argparse.Namespace) -> None:
    from nas_kd.students import resolve_student
    from nas_kd.train.distill import train_students

    recipe = load_checked(args.recipe, args.overrides)
    student = resolve_student(args.student or recipe.student.arch, recipe.student.space)
    _report(train_students(recipe, student, resume=args.resume), args.results,
            ("test_acc", "mflops", "params", "best_student", "students"))


def _cmd_train_supernet(args: argparse.Namespace) -> None:
    from nas_kd.train import SUPERNET_TRAINERS

    recipe = load_checked(args.recipe, args.overrides)
    trainer = SUPERNET_TRAINERS.get(recipe.supernet.mode)
    _report(trainer.train(recipe, resume=args.resume), args.results, ("max_acc", "min_acc", "median_acc"))


def _cmd_ground_truth(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.ground_truth import run_ground_truth

    recipe = load_checked(args.recipe, args.overrides)
    out = Path(recipe.run.out_dir) / recipe.run.name
    print(json.dumps(run_ground_truth(recipe, out, queue=args.queue, max_jobs=args.max_jobs, commit=args.commit)))


def _cmd_acceptance(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.acceptance import run_acceptance

    recipe = load_checked(args.recipe, args.overrides)
    seeds = recipe.acceptance.seeds if args.seeds is None else args.seeds
    print(json.dumps(run_acceptance(recipe, band=args.band, evaluator=args.evaluator, strategy=args.strategy,
                                    trials=args.trials, result=args.out, seeds=seeds, queue=args.queue,
                                    commit=args.commit), indent=2))


def _cmd_run(args: argparse.Namespace) -> None:
    from nas_kd.pipeline import run_pipeline

    overrides = list(args.overrides) + ([f"search.budget_ms={args.budget_ms}"] if args.budget_ms is not None else [])
    result = run_pipeline(load_checked(args.recipe, overrides), train_supernet_anyway=args.train_supernet)
    if args.results:
        Path(args.results).parent.mkdir(parents=True, exist_ok=True)
        Path(args.results).write_text(json.dumps(result, indent=2) + "\n")


def _cmd_search(args: argparse.Namespace) -> None:
    from nas_kd.search.run import run_search

    overrides = list(args.overrides)
    for key, value in (("budget_mflops", args.budget_mflops), ("budget_ms", args.budget_ms),
                       ("latency_table", args.latency_table), ("evaluator", args.evaluator),
                       ("strategy", args.strategy), ("trials", args.trials), ("storage", args.storage),
                       ("checkpoint", args.checkpoint)):
        if value is not None:
            overrides.append(f"search.{key}={value}")
    result = run_search(load_checked(args.recipe, overrides), report_only=args.report)
    print(json.dumps({k: result[k] for k in ("budget_mflops", "budget_ms", "scored", "wall_seconds")}
                     | {"best_mflops": result["best"]["mflops"], "best_score": result["best"][result["evaluator"]]}
                     | {k: result[k] for k in ("best_predicted_latency_ms", "best_measured_latency_ms") if k in result},
                     indent=2))


def _cmd_rank_corr(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.study import run_rank_corr

    summary = run_rank_corr(load_checked(args.recipe, args.overrides))
    print(json.dumps({k: summary.get(k) for k in ("main_column", "noise_ceiling", "kendall_tau_band", "regret",
                                                  "random_regret", "maxflops_regret", "wall_seconds")}, indent=2))


def _cmd_plot(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.report import plot_study

    print("\n".join(str(p) for p in plot_study(args.run)))


def _cmd_dna_rank(args: argparse.Namespace) -> None:
    from nas_kd.dna.ranking import rank_stages

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
    result = exact_search(tables, budgets, k=args.k, budgets_ms=args.budget_ms, latency_table=latency_table)
    print(f"exact search over {result['space_size']:.3g} architectures of {result['space']} "
          f"in {result['search_seconds']:.3f} s", file=sys.stderr)
    result = {"tables": args.tables, **result}
    if args.out:
        result = write_result(args.out, result, watch.seconds(), started)
    print(json.dumps({b: v[0] | {"arch": "..."} for b, v in result["by_budget"].items() if v}, indent=2))


def _cmd_export(args: argparse.Namespace) -> None:
    from nas_kd.train.standalone import export_student

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
    report = export_student(checkpoint, arch_arg or "max", args.out, recipe,
                            recalibrate_batches=args.recalibrate_batches, finetune_epochs=args.finetune_epochs,
                            torchscript=args.torchscript, onnx=args.onnx)
    print(json.dumps(report, indent=2))


def _cmd_bench(args: argparse.Namespace) -> None:
    from nas_kd.bench import BENCHES
    from nas_kd.provenance import Stopwatch, origin, write_result

    started, watch = origin(), Stopwatch()
    payload = BENCHES.get(args.name)(args)
    if payload is not None:
        out = args.out or f"results/bench_{args.name}.json"
        print(json.dumps(write_result(out, payload, watch.seconds(), started), indent=2))


def _space_arg(args: argparse.Namespace):
    import search_spaces

    shape = tuple(args.input_shape) if args.input_shape else search_spaces.DEFAULT_INPUT_SHAPE
    return search_spaces.get(args.space, input_shape=shape, num_classes=args.num_classes)


def _cmd_latency_table(args: argparse.Namespace) -> None:
    from nas_kd.latency import build_table
    from nas_kd.provenance import Stopwatch, origin, write_result

    started, watch = origin(), Stopwatch()
    table = build_table(_space_arg(args), device=args.device, batch_size=args.batch_size, threads=args.threads,
                        repeats=args.repeats, calibration_archs=args.calibration_archs)
    write_result(args.out, table, watch.seconds(), started)
    print(f"{len(table['blocks_ms'])} block variants of {table['space']} timed on {table['device']} "
          f"(batch {table['batch_size']}, {table['threads']} threads) -> {args.out}", file=sys.stderr)


def _cmd_latency_check(args: argparse.Namespace) -> None:
    import random

    import search_spaces
    from nas_kd.latency import check_predictions, load_table
    from nas_kd.provenance import Stopwatch, origin, write_result

    started, watch = origin(), Stopwatch()
    table = load_table(args.table)
    space = search_spaces.from_meta(table)
    rng = random.Random(f"latency-check-{args.seed}")
    found = check_predictions(space, table, [space.sample(rng) for _ in range(args.num_archs)])
    payload = {"table": args.table, **found}
    if args.out:
        payload = write_result(args.out, payload, watch.seconds(), started)
    print(json.dumps({k: payload[k] for k in ("num_archs", "spearman", "mape", "within_10pct", "flops_spearman")}, indent=2))


def _report(final: dict, results: str | None, keys: tuple[str, ...]) -> None:
    """Print a trainer's headline metrics (rank 0 only) and copy its final JSON to ``results`` if given."""
    from nas_kd.train import distributed as dist

    if not dist.is_main():
        return
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(final, indent=2) + "\n")
    print(json.dumps({k: final[k] for k in (*keys, "wall_seconds", "checkpoint") if k in final}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand; lists of names come from the registries."""
    from nas_kd.evaluators import EVALUATORS
    from nas_kd.search.strategies import STRATEGIES

    parser = argparse.ArgumentParser(prog="nas-kd", description="Search the best student for a fixed teacher.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="the whole pipeline: teacher -> supernet -> search -> export + distillation")
    _recipe_args(p)
    p.add_argument("--train-supernet", action="store_true",
                   help="train a supernet even when pipeline.supernet_checkpoint matches the recipe")
    p.add_argument("--results", help="also write pipeline.json here (e.g. results/quickstart.json)")
    p.add_argument("--budget-ms", type=POSITIVE, help="also a latency budget (ms, batch 1 on this machine; a latency "
                                                       "table is timed here unless search.latency_table names one)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("train-teacher", help="train a teacher (the reference ResNet or your own model)")
    _recipe_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--results", help="also write the final metrics JSON here")
    p.set_defaults(func=_cmd_train_teacher)

    p = sub.add_parser("train-supernet", help="train a weight-sharing supernet (sandwich rule, in-place distillation)")
    _recipe_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--results", help="also write the final metrics JSON here")
    p.set_defaults(func=_cmd_train_supernet)

    p = sub.add_parser("distill", help="train a student with the recipe's distillation terms (nas_kd.distill)")
    _recipe_args(p)
    p.add_argument("--student", help="space:max|min, an arch JSON file, an exported subnet directory or "
                                      "package.module:function (default: the recipe's student.arch)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--results", help="also write the final metrics JSON here")
    p.set_defaults(func=_cmd_distill)

    p = sub.add_parser("train-arch", help="train one architecture of a space from scratch (optionally with KD)")
    _recipe_args(p)
    p.add_argument("--arch", help="'max', 'min' or a JSON arch file (default: the recipe's student.arch)")
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--results", help="also write the final metrics JSON here")
    p.set_defaults(func=_cmd_train_arch)

    p = sub.add_parser("search", help="search the best subnet under a FLOPs budget with an evaluator and a strategy")
    _recipe_args(p)
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

    p = sub.add_parser("rank-corr", help="search quality: every evaluator vs the ground truth inside each budget band "
                                         "(noise ceiling, Kendall tau, regret), per supernet checkpoint")
    _recipe_args(p)
    p.set_defaults(func=_cmd_rank_corr)

    p = sub.add_parser("plot", help="redraw a search-quality study's figures from its saved JSON")
    p.add_argument("--run", required=True, help="the study's run directory (holds rankcorr.json)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("dna-rank", help="score every candidate of every stage of a blockwise supernet")
    _recipe_args(p)
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
    p.add_argument("--k", type=COUNT, default=5, help="architectures returned per budget")
    p.add_argument("--out", help="result JSON to write")
    p.set_defaults(func=_cmd_dna_search)

    p = sub.add_parser("ground-truth", help="work the search-quality study's ground-truth job queue "
                                            "(run it in several processes or machines to share the jobs)")
    _recipe_args(p)
    p.add_argument("--queue", help="Optuna RDB URL of the job queue (default: the recipe's, else SQLite in the run dir)")
    p.add_argument("--max-jobs", type=COUNT, help="stop after this many jobs")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.set_defaults(func=_cmd_ground_truth)

    p = sub.add_parser("acceptance", help="at one budget band: searched student vs max-FLOPs, hand-designed and "
                                          "best-of-N-random picks (the recipe's acceptance section), each distilled "
                                          "with the same seeds (Welch t-tests)")
    _recipe_args(p)
    p.add_argument("--band", default="0.12", help="the study's band (budget as a fraction of the max arch's FLOPs)")
    p.add_argument("--evaluator", default="kl", help=f"evaluator of the searched student ({', '.join(EVALUATORS.available())})")
    p.add_argument("--strategy", default="evolution",
                   help=f"search strategy of the searched student ({', '.join(STRATEGIES.available())})")
    p.add_argument("--trials", type=COUNT, default=100, help="archs the search scores")
    p.add_argument("--seeds", type=COUNT, help="training seeds per student (0 .. N-1; at least 2; "
                                               "default: the recipe's acceptance.seeds)")
    p.add_argument("--out", default="results/search_fmnist", help="result path without suffix (.json and .md)")
    p.add_argument("--queue", help="Optuna RDB URL of the job queue (default: SQLite in the run dir)")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.set_defaults(func=_cmd_acceptance)

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
    _recipe_args(p, required=False)
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("latency-table", help="time every block variant of a space on this machine (a lookup table "
                                             "for latency budgets)")
    p.add_argument("--space", required=True, help="search space name")
    p.add_argument("--input-shape", type=COUNT, nargs=3, metavar=("C", "H", "W"), help="input shape (default 1 28 28)")
    p.add_argument("--num-classes", type=COUNT, default=10)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--batch-size", type=COUNT, default=1)
    p.add_argument("--threads", type=COUNT, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=COUNT, default=20, help="timed samples per block (the fastest is kept)")
    p.add_argument("--calibration-archs", type=NATURAL, default=8, help="whole archs timed to calibrate the sum (0: none)")
    p.add_argument("--out", required=True, help="the table (JSON)")
    p.set_defaults(func=_cmd_latency_table)

    p = sub.add_parser("latency-check", help="time real subnets and report the latency table's prediction error")
    p.add_argument("--table", required=True, help="a table from nas-kd latency-table")
    p.add_argument("--num-archs", type=COUNT, default=20)
    p.add_argument("--seed", type=NATURAL, default=0)
    p.add_argument("--out", help="result JSON")
    p.set_defaults(func=_cmd_latency_check)

    from nas_kd.bench import BENCHES

    p = sub.add_parser("bench", help="benchmarks: " + ", ".join(f"'{n}' ({BENCHES.get(n).__doc__})"
                                                                 for n in BENCHES.available()))
    p.add_argument("name", choices=BENCHES.available())
    p.add_argument("--threads", type=COUNT, default=2, help="torch threads (latency)")
    p.add_argument("--batch-sizes", type=COUNT, nargs="+", default=[1, 32], help="batch sizes (latency)")
    p.add_argument("--table", help="distill, supernet-ablation: the table file (rows x seeds), e.g. "
                                    "recipes/distill_table_fmnist.yaml")
    p.add_argument("--rows", nargs="*", help="distill, supernet-ablation: only these rows")
    p.add_argument("--commit", action="store_true", help="distill, supernet-ablation: git-commit each record as it lands")
    p.add_argument("--report", action="store_true", help="distill, supernet-ablation: train nothing, rebuild the "
                                                         "table from the records")
    p.add_argument("--spaces", nargs="*", help="search spaces (default: mbv2 resnet)")
    p.add_argument("--num-archs", type=COUNT, default=100, help="archs per space (flops, latency)")
    p.add_argument("--repeats", type=COUNT, default=10, help="timed steps per arch and model (supernet)")
    p.add_argument("--dna-tables", help="ranking tables to include the dna evaluator (evaluators)")
    p.add_argument("--out", help="result JSON (default: results/bench_NAME.json)")
    _recipe_args(p, required=False)
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nas-kd``; user errors print one clear line and exit 2."""
    from nas_kd.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"nas-kd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
