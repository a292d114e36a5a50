"""What the commands share: number types for options, the recipe options, the report of a trainer."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def _number(kind: type, low: float | None = None, high: float | None = None, low_open: bool = False):
    """An argparse type: a finite ``kind`` within [low, high] (``low_open``: low excluded)."""
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
        Path(results).parent.mkdir(parents=True, exist_ok=True)
        Path(results).write_text(json.dumps(final, indent=2) + "\n")
    print(json.dumps({k: final[k] for k in (*keys, "wall_seconds", "checkpoint") if k in final}, indent=2))
