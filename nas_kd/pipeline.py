"""``nas-kd run``: the whole job in one command: teacher -> supernet -> search -> export + distillation -> summary.

Every stage writes its own run directory under ``<run.out_dir>/<run.name>/`` (``teacher``,
``supernet``, ``search``, ``student``) and is skipped when its result already exists, so a killed
pipeline resumes where it stopped (an interrupted supernet resumes from its last checkpoint).
The teacher is trained only when ``teacher.checkpoint`` is unset or missing. The supernet is not
trained when ``pipeline.supernet_checkpoint`` names one that matches the recipe (space, input
and classes, teacher, dataset; checked against the checkpoint and the result JSON beside it), the
way once-for-all users start from a trained once-for-all network; a mismatch is named and a
supernet is trained instead. The run ends with a teacher-vs-student summary.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from nas_kd.config import Recipe, derive
from nas_kd.provenance import Stopwatch, origin, write_result


def _stage(recipe: Recipe, base: Path, name: str, **changes: Any) -> Recipe:
    """The recipe of one stage: its own run directory under ``base`` (plus ``changes``, dotted keys with ``__``)."""
    return derive(recipe, {"run.out_dir": str(base), "run.name": name,
                           **{k.replace("__", "."): v for k, v in changes.items()}})


TEACHER_KEYS = ("model", "kwargs", "checkpoint", "torchscript", "subnet")


def supernet_mismatches(recipe: Recipe, checkpoint: str | Path, num_classes: int,
                        input_shape: tuple[int, int, int]) -> list[str]:
    """Why the trained supernet at ``checkpoint`` does not fit ``recipe`` and its data (empty: it does)."""
    import search_spaces
    from nas_kd.checkpoint import load_checkpoint
    from nas_kd.subnet import shape_text

    path = Path(checkpoint)
    if not path.exists():
        return [f"{path} does not exist"]
    meta = load_checkpoint(path).get("supernet") or {}
    found = []
    if meta.get("space") != recipe.supernet.space:
        found.append(f"space: the checkpoint has {meta.get('space')!r}, the recipe needs {recipe.supernet.space!r}")
    elif (space := search_spaces.from_meta(meta)).num_classes != num_classes:
        found.append(f"num_classes: the checkpoint has {space.num_classes}, the data has {num_classes}")
    elif space.input_shape != tuple(input_shape):
        found.append(f"input_shape: the checkpoint has {shape_text(space.input_shape)}, "
                     f"the data has {shape_text(input_shape)}")
    record = path.with_suffix(".json")
    if not record.exists():
        return [*found, f"no {record.name} beside it to say which teacher and data trained it"]
    trained = json.loads(record.read_text()).get("recipe", {})
    for key in TEACHER_KEYS:
        if trained.get("teacher", {}).get(key) != getattr(recipe.teacher, key):
            found.append(f"teacher.{key}: trained with {trained.get('teacher', {}).get(key)!r}, "
                         f"the recipe has {getattr(recipe.teacher, key)!r}")
    if trained.get("data", {}).get("dataset") != recipe.data.dataset:
        found.append(f"data.dataset: trained on {trained.get('data', {}).get('dataset')!r}")
    return found


def _latency_table_here(recipe: Recipe, data, path: Path) -> str:
    """A batch-1 latency table of the recipe's space timed on this machine (once; reused on a re-run)."""
    if not path.exists():
        from nas_kd.latency import build_table

        started, watch = origin(), Stopwatch()
        table = build_table(data.space(recipe.supernet.space), threads=recipe.train.threads)
        write_result(path, table, watch.seconds(), started)
    return str(path)


def run_pipeline(recipe: Recipe, *, train_supernet_anyway: bool = False) -> dict[str, Any]:
    """Run every stage not yet done; returns ``pipeline.json`` (per-stage results, wall times, the summary)."""
    from nas_kd.data import load_data
    from nas_kd.search.run import run_search
    from nas_kd.summary import compare_models, print_summary
    from nas_kd.train.standalone import export_student, train_teacher
    from nas_kd.train.supernet import train_supernet

    started, watch = origin(), Stopwatch()
    base = Path(recipe.run.out_dir) / recipe.run.name
    base.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    data = load_data(recipe)

    t = Stopwatch()
    if not recipe.teacher.checkpoint or not Path(recipe.teacher.checkpoint).exists():
        r = _stage(recipe, base, "teacher", distill=[], student__ce_weight=1.0)  # the teacher learns from the labels
        done = base / "teacher" / "final.json"
        if not done.exists():
            train_teacher(r, resume=(base / "teacher/checkpoints/last.pt").exists())
        recipe = derive(recipe, {"teacher.checkpoint": str(base / "teacher" / "model.pt")})
    seconds["teacher"] = t.seconds()

    t = Stopwatch()
    pre = recipe.pipeline.supernet_checkpoint
    reused = None
    if pre and not train_supernet_anyway:
        why = supernet_mismatches(recipe, pre, data.num_classes, data.input_shape)
        if why:
            print(f"nas-kd run: not reusing {pre} ({'; '.join(why)}); training a supernet", file=sys.stderr)
        else:
            reused = pre
            print(f"nas-kd run: starting from the trained supernet {pre} (it matches the recipe; "
                  "--train-supernet trains one instead)", file=sys.stderr)
    if reused:
        checkpoint = reused
        supernet_final = json.loads(Path(reused).with_suffix(".json").read_text())
    else:
        r = _stage(recipe, base, "supernet")
        if not (base / "supernet" / "final.json").exists():
            train_supernet(r, resume=(base / "supernet/checkpoints/last.pt").exists())
        supernet_final = json.loads((base / "supernet" / "final.json").read_text())
        checkpoint = str(base / "supernet" / "checkpoints" / "last.pt")
    seconds["supernet"] = t.seconds()

    t = Stopwatch()
    budget = recipe.search.budget_mflops
    if budget is None and recipe.pipeline.budget_fraction_of_teacher is not None:
        from nas_kd.flops import count_flops
        from nas_kd.teacher import load_teacher

        teacher = load_teacher(recipe.teacher, data.num_classes, data.in_channels)
        shape = (1, *data.input_shape)
        budget = recipe.pipeline.budget_fraction_of_teacher * count_flops(teacher, shape) / 1e6
    latency = {}
    if recipe.search.budget_ms is not None and recipe.search.latency_table is None:
        latency = {"search__latency_table": _latency_table_here(recipe, data, base / "latency_table.json")}
    r = _stage(recipe, base, "search", search__checkpoint=checkpoint, search__budget_mflops=budget, **latency)
    search = json.loads((base / "search" / "search.json").read_text()) if (base / "search/search.json").exists() \
        else run_search(r)
    seconds["search"] = t.seconds()

    t = Stopwatch()
    student = base / "student"
    if not (student / "arch.json").exists():
        ft = derive(recipe, {"train.lr": recipe.pipeline.finetune_lr, "train.warmup_epochs": 0.0})
        export_student(checkpoint, str(base / "search" / "best_arch.json"), student, ft,
                       recalibrate_batches=recipe.supernet.bn_batches, finetune_epochs=recipe.pipeline.finetune_epochs)
    seconds["export"] = t.seconds()

    comparison = compare_models(recipe, data, student)
    payload = {
        "teacher_checkpoint": recipe.teacher.checkpoint,
        "supernet": {"checkpoint": checkpoint, "reused": bool(reused),
                     **{k: supernet_final.get(k) for k in ("max_acc", "min_acc", "median_acc", "wall_seconds")}},
        "search": {k: search.get(k) for k in ("evaluator", "strategy", "budget_mflops", "budget_ms", "scored",
                                              "best_predicted_latency_ms", "best_measured_latency_ms", "wall_seconds")},
        **comparison,
        "student_dir": str(student), "pareto_plot": str(base / "search" / "pareto.png"),
        "stage_seconds_this_invocation": {k: round(v, 1) for k, v in seconds.items()},
    }
    result = write_result(base / "pipeline.json", payload, watch.seconds(), started)
    print_summary(result)
    return result
