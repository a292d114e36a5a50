"""``nas-kd run``: the whole pipeline in one command."""
from __future__ import annotations

import argparse

from nas_kd.cli.common import recipe_args
from nas_kd.recipe_checks import load_checked
from nas_kd.typecheck import POSITIVE


def _cmd_run(args: argparse.Namespace) -> None:
    from nas_kd.recipes import pipeline

    overrides = list(args.overrides) + ([f"search.budget_ms={args.budget_ms}"] if args.budget_ms is not None else [])
    result = pipeline(load_checked(args.recipe, overrides), train_supernet_anyway=args.train_supernet)
    if args.results:
        from nas_kd.provenance import write_json_atomic

        write_json_atomic(args.results, result)


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("run", help="the whole pipeline: teacher -> supernet -> search -> export + distillation")
    recipe_args(p)
    p.add_argument("--train-supernet", action="store_true",
                   help="train a supernet even when pipeline.supernet_checkpoint matches the recipe")
    p.add_argument("--results", help="also write pipeline.json here (e.g. results/quickstart.json)")
    p.add_argument("--budget-ms", type=POSITIVE, help="also a latency budget (ms, batch 1 on this machine; a latency "
                                                       "table is timed here unless search.latency_table names one)")
    p.set_defaults(func=_cmd_run)
