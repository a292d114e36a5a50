"""``nas-kd bench distill --table T``: the distillation method table (rows x seeds, one student, one schedule).

The table file names the base recipe, the seeds, a run directory and the rows (each a list of
``--set`` overrides; ``{runs}`` and ``{seed}`` are substituted, so born-again can name the scratch
row's student). Each (row, seed) writes one record ``<out>/<row>-s<seed>.json`` (with its command,
commit and wall time) as it finishes; finished records are skipped and an interrupted run resumes
from its checkpoint, so the table fills in across sessions. A row whose overrides name another
row's run directory (``{runs}/<row>-s{seed}``) has that run trained first if it is missing. The
table itself is rebuilt from the records into ``<out>.json`` and ``<out>.md``.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import yaml

from nas_kd.config import load_recipe
from nas_kd.errors import UserError
from nas_kd.provenance import Stopwatch, commit_record, origin, write_result

TABLE_KEYS = {"recipe", "seeds", "runs", "out", "rows"}


def load_table(path: str | Path) -> dict[str, Any]:
    """Read and check a table file."""
    try:
        table = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the table ({e})") from None
    if not isinstance(table, dict) or set(table) != TABLE_KEYS:
        raise UserError(f"{path}: a table has exactly the keys {sorted(TABLE_KEYS)}")
    if not isinstance(table["rows"], dict) or not all(isinstance(v, list) for v in table["rows"].values()):
        raise UserError(f"{path}: rows maps each row name to a list of KEY=VALUE overrides")
    if not table["seeds"] or not all(isinstance(s, int) for s in table["seeds"]):
        raise UserError(f"{path}: seeds is a non-empty list of integers")
    return table


def _overrides(table: dict, row: str, seed: int) -> list[str]:
    return [o.replace("{runs}", str(table["runs"])).replace("{seed}", str(seed)) for o in table["rows"][row]]


def _needs(table: dict, row: str) -> list[str]:
    """Rows whose run directory ``row``'s overrides name."""
    text = " ".join(table["rows"][row])
    return [r for r in table["rows"] if r != row and re.search(r"\{runs\}/" + re.escape(r) + r"-s\{seed\}", text)]


def run_row(table: dict, row: str, seed: int, *, commit: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one (row, seed) and write its record; returns the record."""
    from nas_kd.students import resolve_student
    from nas_kd.train.distill import train_students

    started = origin()
    name = f"{row}-s{seed}"
    run_dir = Path(table["runs"]) / name
    for dep in _needs(table, row):
        if not (Path(table["runs"]) / f"{dep}-s{seed}" / "final.json").exists():
            run_row(table, dep, seed, commit=commit, show_progress=show_progress)
    recipe = load_recipe(table["recipe"], [*_overrides(table, row, seed), f"seed={seed}",
                                           f"run.out_dir={table['runs']}", f"run.name={name}"])
    if (run_dir / "final.json").exists():
        final = json.loads((run_dir / "final.json").read_text())
    else:
        student = resolve_student(recipe.student.arch, recipe.student.space)
        final = train_students(recipe, student, resume=(run_dir / "checkpoints/last.pt").exists(),
                               show_progress=show_progress)
    record = {"row": row, "seed": seed, "overrides": table["rows"][row],
              **{k: final[k] for k in ("test_acc", "val_acc", "students_test_acc", "best_student", "mflops", "params",
                                       "seconds_per_epoch", "epochs", "distill", "ce_weight", "teachers", "device")}}
    path = Path(table["out"]) / f"{name}.json"
    record = write_result(path, record, final["wall_seconds"], started)
    if commit:
        commit_record(path)
    return record


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """Rows' mean +- std over the finished seeds, from the records."""
    rows = {}
    for row in table["rows"]:
        recs = [json.loads(p.read_text()) for s in table["seeds"] if (p := Path(table["out"]) / f"{row}-s{s}.json").exists()]
        if not recs:
            continue
        accs = [r["test_acc"] for r in recs]
        mean = sum(accs) / len(accs)
        std = math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else None
        rows[row] = {"acc_mean": mean, "acc_std": std, "seeds": accs, "seed_ids": [r["seed"] for r in recs],
                     "seconds_per_epoch": sum(r["seconds_per_epoch"] for r in recs) / len(recs),
                     "command": f"nas-kd bench distill --table {table_path} (row {row})",
                     "overrides": table["rows"][row]}
    first = next((json.loads(p.read_text()) for p in sorted(Path(table["out"]).glob("*.json"))), {})
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


def bench_distill(table_path: str, *, rows: list[str] | None = None, commit: bool = False, report_only: bool = False,
                  show_progress: bool = True) -> dict[str, Any]:
    """Run every missing (row, seed) of the table (or of ``rows``), then rebuild ``<out>.json`` / ``<out>.md``
    from the records (``report_only``: only rebuild, from the records there are)."""
    started, watch = origin(), Stopwatch()
    table = load_table(table_path)
    unknown = [r for r in rows or [] if r not in table["rows"]]
    if unknown:
        raise UserError(f"--rows {unknown}: not rows of {table_path} ({', '.join(table['rows'])})")
    for seed in [] if report_only else table["seeds"]:
        for row in rows or table["rows"]:
            if not (Path(table["out"]) / f"{row}-s{seed}.json").exists():
                run_row(table, row, seed, commit=commit, show_progress=show_progress)
    summary = summarise(table, table_path)
    out = Path(table["out"])
    write_markdown(summary, out.with_suffix(".md"), table_path)
    return write_result(out.with_suffix(".json"), summary, watch.seconds(), started)
