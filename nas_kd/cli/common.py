"""What the commands share: the recipe options and the report of a trainer (number types: :mod:`nas_kd.typecheck`)."""
from __future__ import annotations

import argparse
import json


def recipe_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--recipe", required=required, help="YAML recipe (see recipes/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.epochs=2 (repeatable)")


def report(final: dict, results: str | None, keys: tuple[str, ...]) -> None:
    """Print a trainer's headline metrics (rank 0 only) and copy its final JSON to ``results`` if given."""
    from nas_kd.train import distributed as dist

    if not dist.is_main():
        return
    if results:
        from nas_kd.provenance import write_json_atomic

        write_json_atomic(results, final)
    print(json.dumps({k: final[k] for k in (*keys, "wall_seconds", "checkpoint") if k in final}, indent=2))
