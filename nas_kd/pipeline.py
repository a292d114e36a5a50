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
    from nas_kd.bn import recalibrate_bn
    from nas_kd.export import export_subnet, save_subnet
    from nas_kd.search.run import run_search
    from nas_kd.supernet import load_supernet
    from nas_kd.train.setup import calibration_batches, load_data
    from nas_kd.train.standalone import finetune, resolve_arch, train_teacher
    from nas_kd.train.supernet import train_supernet

    started, watch = origin(), Stopwatch()
    base = Path(recipe.run.out_dir) / recipe.run.name
    base.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    recipe = copy.deepcopy(recipe)

    t = Stopwatch()
    if not recipe.teacher.checkpoint or not Path(recipe.teacher.checkpoint).exists():
        r = _stage(recipe, base, "teacher")
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
        net = load_supernet(r.search.checkpoint)
        arch = resolve_arch(net.space, str(base / "search" / "best_arch.json"))
        net.set_arch(arch)
        recalibrate_bn(net, calibration_batches(recipe, load_data(recipe)).epoch(0), recipe.supernet.bn_batches,
                       channels_last=recipe.train.channels_last)
        subnet = export_subnet(net.eval(), arch)
        if recipe.pipeline.finetune_epochs:
            ft = _stage(recipe, student, "finetune")
            ft.train.lr = recipe.pipeline.finetune_lr
            ft.train.warmup_epochs = 0.0
            finetune(ft, subnet, recipe.pipeline.finetune_epochs, student / "finetune")
        save_subnet(subnet.eval(), student, source=r.search.checkpoint)
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
