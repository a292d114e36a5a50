"""``nas-kd bench NAME``: one sub-command per registered benchmark, each with the options it declares."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from nas_kd.bench import BENCHES
from nas_kd.provenance import Stopwatch, origin, write_result


def _cmd_bench(args: argparse.Namespace) -> None:
    started, watch = origin(), Stopwatch()
    bench = BENCHES.get(args.name)
    payload = bench.run(args)
    if payload is not None:
        out = Path(args.out or f"results/bench_{args.name}.json")
        written = write_result(out, payload, watch.seconds(), started)
        if bench.report is not None:
            bench.report(written, out)
        print(json.dumps(written, indent=2) if bench.report is None else f"wrote {out} and its report")


def add(sub: argparse._SubParsersAction) -> None:
    """``bench`` and, under it, every benchmark of :data:`~nas_kd.bench.BENCHES`."""
    p = sub.add_parser("bench", help="benchmarks: " + ", ".join(f"'{n}' ({BENCHES.get(n).help})"
                                                                 for n in BENCHES.available()))
    names = p.add_subparsers(dest="name", required=True, metavar="NAME")
    for name in BENCHES.available():
        bench = BENCHES.get(name)
        q = names.add_parser(name, help=bench.help)
        bench.options(q)
        q.add_argument("--out", help=f"result JSON (default: results/bench_{name}.json)")
        q.set_defaults(func=_cmd_bench)
