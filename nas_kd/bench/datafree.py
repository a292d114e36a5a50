"""``nas-kd bench datafree --table T``: data-free distillation against real data at the same number of images.

The table (rows x seeds, run by :mod:`nas_kd.bench.table`) trains one student with KD from the teacher on N real
training images (row ``real_kd``), from scratch on the same N images (``real_scratch``), and on the synthetic images
of each data-free method: every row whose recipe sets ``data.synthetic`` (a dataset of ``nas-kd synthesize``) is a
synthetic row, named freely (``deepinversion``, ``impressions``, ...). Every row is tested on the real test split.
The summary adds each synthesis' own record (its method, command, images, seconds per 1,000 images) and tests every
synthetic row against ``real_kd``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_kd.bench.distill import keep
from nas_kd.bench.distill import summarise as summarise_rows
from nas_kd.bench.table import row_recipe, run_table
from nas_kd.datafree import synthetic_validation_size
from nas_kd.errors import UserError
from nas_kd.results.datafree import lines as datafree_lines

REAL = ("real_kd", "real_scratch")
KEPT = ("command", "git_commit", "method", "num_images", "settings", "seconds_per_1000_images", "wall_seconds",
        "bn_loss_first_mean", "bn_loss_last_mean", "loss_first_mean", "loss_last_mean", "teacher_confidence_mean")


def synthetic_rows(table: dict) -> dict[str, str]:
    """``{row: its data.synthetic}`` for the rows that train on synthetic images."""
    seed = table["seeds"][0]
    return {row: npz for row in table["rows"] if (npz := row_recipe(table, row, seed).data.synthetic)}


def _synthesis(table: dict, row: str, npz: str) -> dict[str, Any]:
    """The record ``nas-kd synthesize`` wrote beside a synthetic row's inputs (or the copy an earlier summary kept:
    runs/ is not committed)."""
    path = Path(npz).parent / "synthesis.json"
    if path.exists():
        return json.loads(path.read_text())
    summary = Path(table["out"]).with_suffix(".json")
    kept = json.loads(summary.read_text()) if summary.exists() else {}
    if row in kept.get("syntheses", {}):
        return kept["syntheses"][row]
    if row == "synthetic_kd" and "synthesis" in kept:  # summaries before several methods kept their one as this
        return kept["synthesis"]
    raise UserError(f"{path}: no synthesis record for row {row!r}; make its inputs first (the command is in the "
                    "table's header)")


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """The rows' mean +- s.d. and the images each trained on, and every synthesis' record."""
    synthetic = synthetic_rows(table)
    missing = [r for r in REAL if r not in table["rows"]]
    if missing or not synthetic:
        raise UserError(f"{table_path}: a data-free table has the rows {', '.join(REAL)} and at least one row with "
                        f"data.synthetic (missing: {', '.join(missing) or 'a synthetic row'})")
    out = summarise_rows(table, table_path)
    syntheses = {row: {k: v for k, v in _synthesis(table, row, npz).items() if k in KEPT}
                 for row, npz in synthetic.items() if row in out["rows"]}  # the rows with records so far
    recipe = row_recipe(table, "real_kd", table["seeds"][0])
    for name, row in out["rows"].items():  # the images each row trained on (synthetic: the last tenth validates)
        if name in syntheses:
            n = syntheses[name]["num_images"]
            row |= {"num_images": n - synthetic_validation_size(n), "synthetic": True,
                    "method": syntheses[name].get("method", "deepinversion")}
        else:
            row |= {"num_images": recipe.data.limit_train, "synthetic": False}
        row["command"] = row["command"].replace("bench distill", "bench datafree")
    out["schedule"] |= {"train_images": recipe.data.limit_train, "epochs": recipe.train.epochs}
    out["syntheses"] = syntheses
    return out


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    """The table as Markdown (:func:`nas_kd.results.datafree.lines`, as ``docs/results.md`` shows it)."""
    lines = ["# Data-free distillation on Fashion-MNIST", "",
             f"Regenerate: `nas-kd bench datafree --table {table_path}` (records: one JSON per row and seed).", "",
             *datafree_lines(summary, str(path.with_suffix(".json")))]
    path.write_text("\n".join(lines) + "\n")


def bench_datafree(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the data-free table, then rebuild its summary (see :func:`run_table`)."""
    return run_table(table_path, "distill", keep, summarise, write_markdown, **kwargs)
