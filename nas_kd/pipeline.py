"""``nas-kd run``: the whole job in one command: teacher -> supernet -> search -> export (+ fine-tune) -> plots.

Every stage writes its own run directory under ``<run.out_dir>/<run.name>/`` (``teacher``,
``supernet``, ``search``, ``student``) and is skipped when its result already exists, so a killed
pipeline resumes where it stopped (an interrupted supernet resumes from its last checkpoint).
The teacher is trained only when ``teacher.checkpoint`` is unset or missing.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from nas_kd.config import Recipe
from nas_kd.provenance import Stopwatch, origin, write_result


def _stage(recipe: Recipe, base: Path, name: str) -> Recipe:
    r = copy.deepcopy(recipe)
    r.run.out_dir, r.run.name = str(base), name
    return r


def run_pipeline(recipe: Recipe) -> dict[str, Any]:
    """Run every stage not yet done; returns ``pipeline.json`` (per-stage results and wall times)."""
    from nas_kd.search.run import run_search
    from nas_kd.train.standalone import export_student, train_teacher
    from nas_kd.train.supernet import train_supernet

    started, watch = origin(), Stopwatch()
    base = Path(recipe.run.out_dir) / recipe.run.name
    base.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    recipe = copy.deepcopy(recipe)

    t = Stopwatch()
    if not recipe.teacher.checkpoint or not Path(recipe.teacher.checkpoint).exists():
        r = _stage(recipe, base, "teacher")
        r.distill, r.student.ce_weight = [], 1.0  # the teacher learns from the labels alone
        done = base / "teacher" / "final.json"
        if not done.exists():
            train_teacher(r, resume=(base / "teacher/checkpoints/last.pt").exists())
        recipe.teacher.checkpoint = str(base / "teacher" / "model.pt")
    seconds["teacher"] = t.seconds()

    t = Stopwatch()
    r = _stage(recipe, base, "supernet")
    if not (base / "supernet" / "final.json").exists():
        train_supernet(r, resume=(base / "supernet/checkpoints/last.pt").exists())
    supernet_final = json.loads((base / "supernet" / "final.json").read_text())
    seconds["supernet"] = t.seconds()

    t = Stopwatch()
    r = _stage(recipe, base, "search")
    r.search.checkpoint = str(base / "supernet" / "checkpoints" / "last.pt")
    search = json.loads((base / "search" / "search.json").read_text()) if (base / "search/search.json").exists() \
        else run_search(r)
    seconds["search"] = t.seconds()

    t = Stopwatch()
    student = base / "student"
    if not (student / "arch.json").exists():
        ft = copy.deepcopy(recipe)
        ft.train.lr, ft.train.warmup_epochs = recipe.pipeline.finetune_lr, 0.0
        export_student(r.search.checkpoint, str(base / "search" / "best_arch.json"), student, ft,
                       recalibrate_batches=recipe.supernet.bn_batches, finetune_epochs=recipe.pipeline.finetune_epochs)
    finetuned = student / "finetune" / "final.json"
    seconds["export"] = t.seconds()

    payload = {
        "teacher_checkpoint": recipe.teacher.checkpoint,
        "supernet": {k: supernet_final[k] for k in ("max_acc", "min_acc", "median_acc", "wall_seconds")},
        "search": {k: search[k] for k in ("evaluator", "strategy", "budget_mflops", "scored", "wall_seconds")},
        "student_mflops": search["best"]["mflops"],
        "student_test_acc": json.loads(finetuned.read_text())["test_acc"] if finetuned.exists() else None,
        "student_dir": str(student), "pareto_plot": str(base / "search" / "pareto.png"),
        "stage_seconds_this_invocation": {k: round(v, 1) for k, v in seconds.items()},
    }
    return write_result(base / "pipeline.json", payload, watch.seconds(), started)
