"""The ``nas-kd`` command line: one module per group of commands, each holding its commands and their parsers
(:mod:`.pipeline` ``run``; :mod:`.train`; :mod:`.search` with export and DNA; :mod:`.study`; :mod:`.latency`;
:mod:`.bench`; :mod:`.docs` ``report``). Every command loads its recipe through :func:`nas_kd.recipe_checks.load_checked`."""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from nas_kd.cli import bench, docs, latency, pipeline, search, study, train
from nas_kd.errors import USER_ERRORS, Stopped

GROUPS = (pipeline, train, search, study, latency, bench, docs)  # in the order ``nas-kd --help`` lists them


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every command; lists of names come from the registries."""
    parser = argparse.ArgumentParser(prog="nas-kd", description="Search the best student for a fixed teacher.")
    parser.set_defaults(root_parser=parser)  # a command that documents the command line reads it (nas-kd report)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.add(sub)
    return parser


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nas-kd``; user errors print one clear line and exit 2. Ctrl-C or SIGTERM ends a command
    with one line saying how to continue (exit 130): a training loop first finishes its step and writes a
    checkpoint; work finished earlier (scored candidates, records, finished stages) is kept."""
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() \
        else None
    try:
        args.func(args)
    except Stopped as e:
        print(f"nas-kd {args.command}: {e}", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"nas-kd {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nas-kd {args.command}: interrupted; what was finished is kept: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0
