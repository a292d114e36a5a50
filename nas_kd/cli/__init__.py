"""The ``nas-kd`` command line: one module per group of commands, each holding its commands and their parsers
(:mod:`.pipeline` ``run``; :mod:`.train`; :mod:`.search` with export and DNA; :mod:`.study`; :mod:`.latency`;
:mod:`.bench`). Every command loads its recipe through :func:`nas_kd.recipe_checks.load_checked`."""
from __future__ import annotations

import argparse
import sys

from nas_kd.cli import bench, latency, pipeline, search, study, train
from nas_kd.errors import USER_ERRORS

GROUPS = (pipeline, train, search, study, latency, bench)  # in the order ``nas-kd --help`` lists them


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command; lists of names come from the registries."""
    parser = argparse.ArgumentParser(prog="nas-kd", description="Search the best student for a fixed teacher.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nas-kd``; user errors print one clear line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as e:
        print(f"nas-kd {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
