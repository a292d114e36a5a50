"""``nas-kd bench distill --table T``: the distillation method table (rows x seeds, one student, one schedule),
run by :mod:`nas_kd.bench.table`; the table is rebuilt from the records into ``<out>.json`` and ``<out>.md``
with every row tested against ``scratch`` and ``kd`` (:mod:`nas_kd.results.distill`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from nas_kd.bench.table import LATENCY_FILE, finished, run_table
from nas_kd.config import load_recipe
from nas_kd.distill import build_distiller, parse_terms
from nas_kd.results.distill import lines as distill_lines

KEEP = ("test_acc", "val_acc", "students_test_acc", "best_student", "mflops", "params", "seconds_per_epoch", "epochs",
        "train_images", "distill", "validation_use", "ce_weight", "teachers", "device")


def keep(final: dict[str, Any]) -> dict[str, Any]:
    return {k: final[k] for k in KEEP}


def _validation_use(specs: list[dict[str, Any]]) -> str | None:
    """What a row's distillers did with validation data (from the ``distill`` its records hold)."""
    uses = [f"{t.name} {use}" for t in parse_terms(specs) if (use := build_distiller(t).validation_use())]
    return "; ".join(uses) or None


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """Rows' mean +- std over the finished seeds, their student's MFLOPs and parameters, what touched validation
    data and the code versions that trained them, from the records."""
    rows = {}
    done = finished(table)
    for row, recs in done.items():
        accs = [r["test_acc"] for r in recs]
        mean = sum(accs) / len(accs)
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else None
        rows[row] = {"acc_mean": mean, "acc_std": std, "seeds": accs, "seed_ids": [r["seed"] for r in recs],
                     "seconds_per_epoch": sum(r["seconds_per_epoch"] for r in recs) / len(recs),
                     "mflops": recs[0]["mflops"], "params": recs[0]["params"],
                     "train_images": recs[0].get("train_images"),  # records before it was recorded: None
                     "validation": _validation_use(recs[0]["distill"]),
                     "git_commits": sorted({r["git_commit"] for r in recs}),
                     "records_wall_seconds": round(sum(r["wall_seconds"] for r in recs), 2),
                     "command": f"nas-kd bench distill --table {table_path} (row {row})",
                     "overrides": table["rows"][row]["set"]}
    base = load_recipe(table["recipe"])
    first = next(iter(table.get("references") or ["scratch"]))
    student = done.get(first, next(iter(done.values()), [{}]))[0]  # the table's student: its first reference's
    schedule = {"train_images": base.data.limit_train, "epochs": base.train.epochs, "batch_size": base.data.batch_size,
                "augmentation": bool(base.data.augment_pad or base.data.flip), "lr": base.train.lr,
                "teacher": base.teacher.checkpoint, "student": base.student.arch,
                "accuracy_kind": "test accuracy (10,000 images), last epoch"}
    timed = Path(table["out"]) / LATENCY_FILE
    latency = json.loads(timed.read_text()) if timed.exists() else None
    if latency:  # each row's network timed (the first seed's): a figure per runtime and batch, the slower pass
        for row, r in rows.items():
            r["latency_ms"] = {rt: {b: max(v) for b, v in by_batch.items()}
                               for rt, by_batch in latency["latency_ms"].get(row, {}).items()}
        latency = {k: latency[k] for k in ("runtimes", "threads", "seed", "pass_seconds", "estimator", "command",
                                           "git_commit", "wall_seconds")} | {"record": str(timed)}
    return {"student_mflops": student.get("mflops"), "student_params": student.get("params"), "schedule": schedule,
            "seeds": table["seeds"], "rows": rows, **({"references": table["references"]} if "references" in table else {}),
            **({"latency": latency} if latency else {}), **({"title": table["title"]} if "title" in table else {})}


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    """The table as Markdown (:func:`nas_kd.results.distill.lines`, as ``docs/results.md`` shows it)."""
    lines = [f"# {summary.get('title', 'Distillation methods on Fashion-MNIST')}", "",
             f"Regenerate: `nas-kd bench distill --table {table_path}` (records: one JSON per row and seed).", "",
             *distill_lines(summary, str(path.with_suffix(".json")))]
    path.write_text("\n".join(lines) + "\n")


def bench_distill(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the distillation table, then rebuild its summary (see :func:`run_table`)."""
    return run_table(table_path, "distill", keep, summarise, write_markdown, **kwargs)
