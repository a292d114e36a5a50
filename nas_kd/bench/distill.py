"""``nas-kd bench distill --table T``: the distillation method table (rows x seeds, one student, one schedule),
run by :mod:`nas_kd.bench.table`; the table is rebuilt from the records into ``<out>.json`` and ``<out>.md``
with which rows differ from ``scratch`` and ``kd`` by more than the seed spread.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nas_kd.bench.table import finished, run_table
from nas_kd.config import load_recipe

KEEP = ("test_acc", "val_acc", "students_test_acc", "best_student", "mflops", "params", "seconds_per_epoch", "epochs",
        "distill", "ce_weight", "teachers", "device")


def keep(final: dict[str, Any]) -> dict[str, Any]:
    return {k: final[k] for k in KEEP}


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """Rows' mean +- std over the finished seeds, from the records."""
    rows = {}
    done = finished(table)
    for row, recs in done.items():
        accs = [r["test_acc"] for r in recs]
        mean = sum(accs) / len(accs)
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else None
        rows[row] = {"acc_mean": mean, "acc_std": std, "seeds": accs, "seed_ids": [r["seed"] for r in recs],
                     "seconds_per_epoch": sum(r["seconds_per_epoch"] for r in recs) / len(recs),
                     "command": f"nas-kd bench distill --table {table_path} (row {row})",
                     "overrides": table["rows"][row]["set"]}
    first = next((recs[0] for recs in done.values()), {})
    base = load_recipe(table["recipe"])
    schedule = {"train_images": base.data.limit_train, "epochs": base.train.epochs, "batch_size": base.data.batch_size,
                "augmentation": bool(base.data.augment_pad or base.data.flip), "lr": base.train.lr,
                "teacher": base.teacher.checkpoint, "student": base.student.arch,
                "accuracy_kind": "test accuracy (10,000 images), last epoch"}
    return {"student_mflops": first.get("mflops"), "student_params": first.get("params"), "schedule": schedule,
            "seeds": table["seeds"], "rows": rows}


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    """The table as Markdown, with which rows differ from ``scratch`` and ``kd`` by more than the seed spread."""
    rows = summary["rows"]

    def spread(a: str, b: str) -> str:
        if a not in rows or b not in rows or rows[a]["acc_std"] is None or rows[b]["acc_std"] is None:
            return "-"
        diff = rows[a]["acc_mean"] - rows[b]["acc_mean"]
        beyond = abs(diff) > rows[a]["acc_std"] + rows[b]["acc_std"]
        return f"{100 * diff:+.2f}{' *' if beyond else ''}"

    lines = [f"# Distillation methods on Fashion-MNIST (student {summary['student_mflops']:.2f} MFLOPs, "
             f"{summary['student_params']} params)", "",
             f"Regenerate: `nas-kd bench distill --table {table_path}` (records: one JSON per row and seed).", "",
             "Schedule, the same for every row: " + ", ".join(f"{k} {v}" for k, v in summary["schedule"].items()) + ".",
             "Seconds per epoch were measured on 2 CPU cores while other jobs shared them: compare them as rough ratios.",
             "",
             "| row | test acc. mean +- std (%) | seeds | vs scratch | vs kd | s / epoch |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        std = f"{100 * r['acc_std']:.2f}" if r["acc_std"] is not None else "-"
        lines.append(f"| {name} | {100 * r['acc_mean']:.2f} +- {std} | {len(r['seeds'])} | {spread(name, 'scratch')} | "
                     f"{spread(name, 'kd')} | {r['seconds_per_epoch']:.1f} |")
    lines += ["", "Differences in points; `*`: larger than the sum of the two rows' seed standard deviations."]
    path.write_text("\n".join(lines) + "\n")


def bench_distill(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the distillation table, then rebuild its summary (see :func:`run_table`)."""
    return run_table(table_path, "distill", keep, summarise, write_markdown, **kwargs)
