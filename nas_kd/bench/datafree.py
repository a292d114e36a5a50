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
from nas_kd.datafree import synthetic_validation_size
from nas_kd.errors import UserError
from nas_kd.results.datafree import lines as datafree_lines

ROWS = ("synthetic_kd", "real_kd", "real_scratch")


def _synthesis(table: dict) -> dict[str, Any]:
    """The record ``nas-kd synthesize`` wrote beside the synthetic row's inputs."""
    npz = row_recipe(table, "synthetic_kd", table["seeds"][0]).data.synthetic
    path = Path(npz).parent / "synthesis.json"
    summary = Path(table["out"]).with_suffix(".json")  # an earlier summary keeps a copy (runs/ is not committed)
    if not path.exists() and summary.exists() and "synthesis" in (kept := json.loads(summary.read_text())):
        return kept["synthesis"]
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
    for name, row in out["rows"].items():  # the images each row trained on (synthetic: the last tenth validates)
        n = synthesis["num_images"] if name == "synthetic_kd" else recipe.data.limit_train
        row["num_images"] = n - synthetic_validation_size(n) if name == "synthetic_kd" else n
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
    """The table as Markdown (:func:`nas_kd.results.datafree.lines`, as ``docs/results.md`` shows it)."""
    lines = ["# Data-free distillation on Fashion-MNIST", "",
             f"Regenerate: `nas-kd bench datafree --table {table_path}` (records: one JSON per row and seed).", "",
             *datafree_lines(summary, str(path.with_suffix(".json")))]
    path.write_text("\n".join(lines) + "\n")


def bench_datafree(table_path: str, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the data-free table, then rebuild its summary (see :func:`run_table`)."""
    return run_table(table_path, "distill", keep, summarise, write_markdown, **kwargs)
