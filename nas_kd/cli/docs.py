"""``nas-kd report``: the generated documentation pages (:mod:`nas_kd.report`)."""
from __future__ import annotations

import argparse

from nas_kd.errors import UserError


def _cmd_report(args: argparse.Namespace) -> None:
    from nas_kd.report import report

    stale = report(args.root, args.root_parser, check=args.check)
    if args.check and stale:
        raise UserError(f"generated pages differ from the committed ones: {', '.join(stale)} (run nas-kd report)")
    print("\n".join(f"{'stale' if args.check else 'wrote'} {p}" for p in stale) or "every generated page is current")


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("report", help="regenerate docs/recipes.md, docs/cli.md, docs/results.md and the README's "
                                      "generated blocks from the code and results/*.json")
    p.add_argument("--check", action="store_true", help="write nothing; fail if a committed page is stale")
    p.add_argument("--root", default=".", help="the repository root (default: here)")
    p.set_defaults(func=_cmd_report)
