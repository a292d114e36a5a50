"""Latency tables of this machine: ``latency-table``, ``latency-check``."""
from __future__ import annotations

import argparse
import json
import sys

from nas_kd.latency import MIN_SECONDS, RUNTIMES
from nas_kd.typecheck import COUNT, NATURAL, NON_NEGATIVE


def _space_arg(args: argparse.Namespace):
    import search_spaces

    shape = tuple(args.input_shape) if args.input_shape else search_spaces.DEFAULT_INPUT_SHAPE
    return search_spaces.get(args.space, input_shape=shape, num_classes=args.num_classes)

def _cmd_latency_table(args: argparse.Namespace) -> None:
    from nas_kd.latency import build_table
    from nas_kd.provenance import Stopwatch, origin, write_result

    started, watch = origin(), Stopwatch()
    table = build_table(_space_arg(args), device=args.device, batch_size=args.batch_size, threads=args.threads,
                        repeats=args.repeats, min_seconds=args.min_seconds, calibration_archs=args.calibration_archs, runtime=args.runtime)
    write_result(args.out, table, watch.seconds(), started)
    print(f"{len(table['blocks_ms'])} block variants of {table['space']} timed with {table['runtime']} on {table['device']} "
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
    found = check_predictions(space, table, [space.sample(rng) for _ in range(args.num_archs)], retest=args.retest)
    payload = {"table": args.table, **found}
    if args.out:
        payload = write_result(args.out, payload, watch.seconds(), started)
    print(json.dumps({k: payload[k] for k in ("num_archs", "spearman", "mape", "within_10pct", "flops_spearman",
                                              "retest_spearman", "retest_mape") if k in payload}, indent=2))


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("latency-table", help="time every block variant of a space on this machine (a lookup table "
                                             "for latency budgets)")
    p.add_argument("--space", required=True, help="search space name")
    p.add_argument("--input-shape", type=COUNT, nargs=3, metavar=("C", "H", "W"), help="input shape (default 1 28 28)")
    p.add_argument("--num-classes", type=COUNT, default=10)
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--runtime", choices=RUNTIMES, default=RUNTIMES[0],
                   help="what runs the model: torch (eager), onnxruntime or openvino (CPU; each block exported to "
                        "ONNX), onnxruntime-int8 or openvino-int8 (each block quantised as nas-kd quantize ships a "
                        "student)")
    p.add_argument("--batch-size", type=COUNT, default=1)
    p.add_argument("--threads", type=COUNT, help="torch threads (default: torch's choice)")
    p.add_argument("--repeats", type=COUNT, default=20, help="timed samples per block (the fastest is kept)")
    p.add_argument("--min-seconds", type=NON_NEGATIVE, default=MIN_SECONDS,
                   help="the timing lasts at least this long, every block sampled in each round (a slow spell of a "
                        "shared machine cannot raise all of a block's samples); the table's checks time alike")
    p.add_argument("--calibration-archs", type=NATURAL, default=16,
                   help="whole archs timed to calibrate the sum (0: none; 8 or more: the per-block terms too)")
    p.add_argument("--out", required=True, help="the table (JSON)")
    p.set_defaults(func=_cmd_latency_table)

    p = sub.add_parser("latency-check", help="time real subnets and report the latency table's prediction error")
    p.add_argument("--table", required=True, help="a table from nas-kd latency-table")
    p.add_argument("--num-archs", type=COUNT, default=20)
    p.add_argument("--seed", type=NATURAL, default=0)
    p.add_argument("--retest", action="store_true", help="time the archs again in a fresh process: the measurement's "
                                                         "own repeatability beside the prediction's error")
    p.add_argument("--out", help="result JSON")
    p.set_defaults(func=_cmd_latency_check)
