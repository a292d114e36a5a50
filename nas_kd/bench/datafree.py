"""``nas-kd bench datafree --table T``: data-free distillation against real data at the same number of images.

The table (rows x seeds, run by :mod:`nas_kd.bench.table`) trains one student with KD from the teacher on N
synthetic images (``nas-kd synthesize``, named by its row's ``data.synthetic``), with KD on N real training images,
and from scratch on the same N real images; every row is tested on the real test split. The summary adds the
synthesis' own record (its command, images, seconds per 1,000 images) and the gap between the synthetic and the
real KD student.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_kd.bench.distill import keep
from nas_kd.bench.distill import summarise as summarise_rows
from nas_kd.bench.table import row_recipe, run_table
from nas_kd.errors import UserError

ROWS = ("synthetic_kd", "real_kd", "real_scratch")


def _synthesis(table: dict) -> dict[str, Any]:
    """The record ``nas-kd synthesize`` wrote beside the synthetic row's inputs."""
    npz = row_recipe(table, "synthetic_kd", table["seeds"][0]).data.synthetic
    path = Path(npz).parent / "synthesis.json"
    if not path.exists():
        raise UserError(f"{path}: no synthesis record; make the inputs first (the command is in the table's header)")
    return json.loads(path.read_text())


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """The rows' mean +- s.d. (and their image counts), the synthesis' cost and the synthetic - real KD gap."""
    missing = [r for r in ROWS if r not in table["rows"]]
    if missing:
        raise UserError(f"{table_path}: a data-free table has the rows {', '.join(ROWS)} (missing: {', '.join(missing)})")
    out = summarise_rows(table, table_path)
    synthesis = _synthesis(table)
    recipe = row_recipe(table, "real_kd", table["seeds"][0])
    for name, row in out["rows"].items():
        row["num_images"] = synthesis["num_images"] if name == "synthetic_kd" else recipe.data.limit_train
        row["command"] = row["command"].replace("bench distill", "bench datafree")
    out["schedule"] |= {"train_images": recipe.data.limit_train, "epochs": recipe.train.epochs}
    out["synthesis"] = {k: synthesis.get(k) for k in ("command", "git_commit", "num_images", "settings",
                                                      "seconds_per_1000_images", "bn_loss_first_mean",
                                                      "bn_loss_last_mean")}
    out["seconds_per_1000_images"] = synthesis.get("seconds_per_1000_images")
    rows = out["rows"]
    if "synthetic_kd" in rows and "real_kd" in rows:
        out["synthetic_minus_real_kd_points"] = 100 * (rows["synthetic_kd"]["acc_mean"] - rows["real_kd"]["acc_mean"])
    return out


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    """The three rows, the gap and the synthesis' cost."""
    s = summary["synthesis"]
    lines = [f"# Data-free distillation on Fashion-MNIST (student {summary['student_mflops']:.2f} MFLOPs)", "",
             f"Regenerate: `nas-kd bench datafree --table {table_path}` (records: one JSON per row and seed); the "
             f"synthetic images: `{s['command']}` ({s['num_images']} images, {s['seconds_per_1000_images']:.0f} s per "
             "1,000 images on this machine, BatchNorm-statistics loss "
             f"{s['bn_loss_first_mean']:.3g} -> {s['bn_loss_last_mean']:.3g}).", "",
             "Schedule, the same for every row: " + ", ".join(f"{k} {v}" for k, v in summary["schedule"].items())
             + "; every row is tested on the real test split.", "",
             "| row | images | test acc. mean +- s.d. (%) | seeds |", "|---|---|---|---|"]
    for name, r in summary["rows"].items():
        std = f"{100 * r['acc_std']:.2f}" if r["acc_std"] is not None else "-"
        lines.append(f"| {name} | {r['num_images']} | {100 * r['acc_mean']:.2f} +- {std} | {len(r['seeds'])} |")
    if "synthetic_minus_real_kd_points" in summary:
        lines += ["", f"Synthetic minus real KD: {summary['synthetic_minus_real_kd_points']:+.2f} points (the "
                      "ambition: within 3 points)."]
    path.write_text("\n".join(lines) + "\n")


def bench_datafree(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the data-free table, then rebuild its summary (see :func:`run_table`)."""
    return run_table(table_path, "distill", keep, summarise, write_markdown, **kwargs)
