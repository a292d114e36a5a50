"""The ``nas-kd`` command line."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from nas_kd.config import load_recipe


def _recipe_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--recipe", required=required, help="YAML recipe (see recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=2 (repeatable)")


def _cmd_train_teacher(args: argparse.Namespace) -> None:
    from nas_kd.train.teacher import train_teacher

    recipe = load_recipe(args.recipe, args.overrides)
    final = train_teacher(recipe, resume=args.resume)
    _publish(final, args.results)
    print(json.dumps({k: final[k] for k in ("test_acc", "flops", "params", "wall_seconds", "checkpoint")}, indent=2))


def _publish(final: dict, results: str | None) -> None:
    """Copy a run's final metrics to ``results`` (e.g. ``results/teacher_fmnist.json``)."""
    if results:
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(final, indent=2) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="nas-kd", description="Search the best student for a fixed teacher.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train-teacher", help="train a teacher (the reference ResNet or your own model)")
    _recipe_args(p)
    p.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    p.add_argument("--results", help="also write the final metrics JSON here")
    p.set_defaults(func=_cmd_train_teacher)
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
