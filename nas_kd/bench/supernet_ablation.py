"""``nas-kd bench supernet-ablation --table T``: how supernet training choices (soft labels, in-place
distillation, the teacher) change the max, min and median-FLOPs subnets, against the min net trained alone.
Rows x seeds are run by :mod:`nas_kd.bench.table`; the summary is rebuilt into ``<out>.json`` / ``<out>.md``.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from nas_kd.bench.table import finished, run_table

SUBNETS = ("max", "min", "median")


def keep(final: dict[str, Any]) -> dict[str, Any]:
    """A supernet run's three subnets; a stand-alone run (``test_acc``) is the min subnet's column."""
    accs = {f"{s}_acc": final.get(f"{s}_acc") for s in SUBNETS}
    if "test_acc" in final:
        accs["min_acc"] = final["test_acc"]
    return {**accs, "epochs": final["epochs"], "device": final["device"],
            "seconds_per_epoch": round(final["wall_seconds"] / max(1, final["epochs"]), 2)}


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """Per row: each subnet's mean test accuracy over the finished seeds (and the seeds' values)."""
    rows = {}
    for row, recs in finished(table).items():
        rows[row] = {f"{s}_acc": (statistics.mean(vals) if (vals := [r[f"{s}_acc"] for r in recs if r[f"{s}_acc"] is not None])
                                  else None) for s in SUBNETS}
        rows[row] |= {"seeds": [r["seed"] for r in recs], "per_seed": [{s: r[f"{s}_acc"] for s in SUBNETS} for r in recs],
                      "seconds_per_epoch": statistics.mean(r["seconds_per_epoch"] for r in recs),
                      "devices": sorted({r["device"] for r in recs}), "overrides": table["rows"][row]["set"],
                      "recipe": table["rows"][row]["recipe"], "trainer": table["rows"][row]["trainer"],
                      "command": f"nas-kd bench supernet-ablation --table {table_path} (row {row})"}
    return {"seeds": table["seeds"], "accuracy": "test accuracy after BN recalibration (stand-alone: plain test "
            "accuracy), last epoch", "rows": rows}


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"  # noqa: E731
    lines = [f"# Supernet training ablation (regenerate: `nas-kd bench supernet-ablation --table {table_path}`)", "",
             f"Accuracy: {summary['accuracy']}; mean over seeds {summary['seeds']}.", "",
             "| row | max | min | median-FLOPs | seeds | s / epoch | device |", "|---|---|---|---|---|---|---|"]
    for name, r in summary["rows"].items():
        lines.append(f"| {name} | {pct(r['max_acc'])} | {pct(r['min_acc'])} | {pct(r['median_acc'])} | {len(r['seeds'])} | "
                     f"{r['seconds_per_epoch']:.1f} | {', '.join(r['devices'])} |")
    path.write_text("\n".join(lines) + "\n")


def bench_supernet_ablation(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the ablation table, then rebuild its summary."""
    return run_table(table_path, "supernet", keep, summarise, write_markdown, **kwargs)
