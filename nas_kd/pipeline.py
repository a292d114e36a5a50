"""``nas-kd run``: the whole job in one command: teacher -> supernet -> search -> export + distillation -> summary.

Every stage writes its own run directory under ``<run.out_dir>/<run.name>/`` (``teacher``,
``supernet``, ``search``, ``student``) and is skipped when its result already exists, so a pipeline killed at
any moment continues when the same command is run again: an interrupted teacher, supernet or student
fine-tune from its last checkpoint, an interrupted search from the candidates it had scored (none is scored
twice), and a stage that wrote no checkpoint yet starts over; the figures are those of an uninterrupted run.
The teacher is trained only when ``teacher.checkpoint`` is unset or missing. The supernet is not
trained when ``pipeline.supernet_checkpoint`` names one that matches the recipe (space, input
and classes, teacher, dataset; checked against the checkpoint and the result JSON beside it), the
way once-for-all users start from a trained once-for-all network; a mismatch is named and a
supernet is trained instead. The run ends with a teacher-vs-student summary.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import torch.nn as nn

import search_spaces
from nas_kd.checkpoint import load_checkpoint
from nas_kd.config import Recipe, derive
from nas_kd.data import DataBundle, load_data
from nas_kd.dna.ranking import rank_stages
from nas_kd.errors import BudgetError, OptionError
from nas_kd.evaluators import supernet_free
from nas_kd.evaluators.context import check_teacher_stages
from nas_kd.flops import count_flops
from nas_kd.latency import build_table
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.search.run import run_search, search_evaluators
from nas_kd.students import arch_student
from nas_kd.subnet import shape_text
from nas_kd.summary import compare_models, print_summary
from nas_kd.teacher import build_model, load_teacher
from nas_kd.train import SupernetTrainer, mode_name, supernet_trainer
from nas_kd.train.distill import train_students
from nas_kd.train.standalone import export_student, resolve_arch, train_teacher
from search_spaces import StagedSpace


def _stage(recipe: Recipe, base: Path, name: str, **changes: Any) -> Recipe:
    """The recipe of one stage: its own run directory under ``base`` (plus ``changes``, dotted keys with ``__``)."""
    return derive(recipe, {"run.out_dir": str(base), "run.name": name,
                           **{k.replace("__", "."): v for k, v in changes.items()}})


TEACHER_KEYS = ("model", "kwargs", "checkpoint", "torchscript", "subnet")


def supernet_mismatches(recipe: Recipe, checkpoint: str | Path, num_classes: int,
                        input_shape: tuple[int, int, int]) -> list[str]:
    """Why the trained supernet at ``checkpoint`` does not fit ``recipe`` and its data (empty: it does)."""
    path = Path(checkpoint)
    if not path.exists():
        return [f"{path} does not exist"]
    ckpt = load_checkpoint(path)
    meta = ckpt.get("supernet") or ckpt.get("blockwise") or {}
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
    mode = trained.get("supernet", {}).get("mode", "sandwich")
    if mode != recipe.supernet.mode:
        found.append(f"supernet.mode: trained by {mode!r}, the recipe has {recipe.supernet.mode!r}")
    if trained.get("data", {}).get("dataset") != recipe.data.dataset:
        found.append(f"data.dataset: trained on {trained.get('data', {}).get('dataset')!r}")
    return found


def _latency_table_here(recipe: Recipe, space, path: Path) -> str:
    """A batch-1 latency table of the recipe's space timed on this machine (once; reused on a re-run)."""
    if not path.exists():
        started, watch = origin(), Stopwatch()
        table = build_table(space, threads=recipe.train.threads, runtime=recipe.search.runtime)
        write_result(path, table, watch.seconds(), started)
    return str(path)


def _latency_budget(recipe: Recipe, data: DataBundle, space, base: Path) -> Recipe:
    """``recipe`` with ``search.budget_ms`` = ``pipeline.latency_fraction_of_teacher`` x the teacher's batch-1
    latency measured here (as the space's latency table is timed: CPU, ``train.threads``) and that table; a budget
    below the space's fastest arch (predicted) is refused naming the key."""
    from nas_kd.latency import load_table, model_latency_ms, torch_threads

    table_path = recipe.search.latency_table or _latency_table_here(recipe, space, base / "latency_table.json")
    table = load_table(table_path)
    with torch_threads(table["threads"]):
        teacher_ms = model_latency_ms(_teacher_module(recipe, data).eval(), data.input_shape,
                                      batch_size=table["batch_size"], device=table["device"])
    fraction = recipe.pipeline.latency_fraction_of_teacher
    budget_ms = fraction * teacher_ms
    fastest = space.latency(space.min_arch(), table)
    if budget_ms < fastest:
        raise BudgetError(f"pipeline.latency_fraction_of_teacher {fraction:g}: {budget_ms:.3f} ms ({fraction:g} x the "
                          f"teacher's {teacher_ms:.3f} ms here) is below the fastest {space.name} arch "
                          f"({fastest:.3f} ms predicted): raise the fraction")
    return derive(recipe, {"search.budget_ms": budget_ms, "search.latency_table": str(table_path)})


def _teacher_module(recipe: Recipe, data: DataBundle) -> nn.Module:
    """The teacher as it will be used: loaded when its weights exist (a corrupt file fails here), else built
    untrained (its FLOPs and module names do not depend on the weights it will learn)."""
    cfg = recipe.teacher
    if cfg.subnet or cfg.torchscript or (cfg.checkpoint and Path(cfg.checkpoint).exists()):
        return load_teacher(cfg, data.num_classes, data.in_channels)
    return build_model(cfg, data.num_classes, data.in_channels)


def plan_pipeline(recipe: Recipe, data: DataBundle, space: StagedSpace, trainer: SupernetTrainer) -> float | None:
    """Every fact of ``nas-kd run`` knowable before any training, checked; returns the FLOPs budget (MFLOPs; None:
    the max arch's).

    The teacher builds (and loads, when its weights exist) and has the stage modules the supernet pairs with;
    the budget lies between the space's smallest and largest arch for the data's shape; the search's
    evaluators fit the supernet the mode trains (a blockwise supernet has no weights to share)."""
    teacher = _teacher_module(recipe, data)
    check_teacher_stages(teacher, recipe.teacher.stages, len(space.stages) + (0 if trainer.weight_sharing else 1))
    evaluators = search_evaluators(recipe.search)
    if not trainer.weight_sharing:
        reading = [ev.name for ev in evaluators if ev.reads_supernet]
        if reading:
            raise OptionError(f"search.evaluator: {', '.join(reading)} score(s) subnets with a weight-sharing "
                              f"supernet's weights, and supernet.mode {mode_name(recipe.supernet.mode)!r} trains none: pick "
                              f"from {', '.join(supernet_free())} (e.g. search.evaluator=dna with "
                              "search.strategy=dna-exhaustive)")
    if recipe.pipeline.latency_fraction_of_teacher is not None and recipe.search.budget_ms is not None:
        raise OptionError("pipeline.latency_fraction_of_teacher and search.budget_ms both set a latency budget: give one")
    budget = recipe.search.budget_mflops
    if budget is None and recipe.pipeline.budget_fraction_of_teacher is not None:
        budget = recipe.pipeline.budget_fraction_of_teacher * count_flops(teacher, (1, *data.input_shape)) / 1e6
        where = f"pipeline.budget_fraction_of_teacher {recipe.pipeline.budget_fraction_of_teacher:g}: "
    else:
        where = "search.budget_mflops: "
    if budget is None:  # the search's default: the max arch's FLOPs
        return None
    try:
        space.check_budget(budget * 1e6)
    except BudgetError as e:
        raise BudgetError(f"{where}{e}") from None
    return budget


def run_pipeline(recipe: Recipe, *, train_supernet_anyway: bool = False) -> dict[str, Any]:
    """Run every stage not yet done; returns ``pipeline.json`` (per-stage results, wall times, the summary).

    Everything knowable before training is checked first (:func:`plan_pipeline`), before the run directory
    exists. ``supernet.mode`` picks the supernet trainer (:data:`~nas_kd.train.SUPERNET_TRAINERS`); with a
    blockwise one (DNA) the pipeline ranks its stages (``dna_tables.json``), searches on those tables, and
    trains the student from its own initialisation for ``pipeline.finetune_epochs`` with the recipe's
    ``train`` settings."""
    started, watch = origin(), Stopwatch()
    trainer = supernet_trainer(recipe.supernet.mode)
    data = load_data(recipe.data)
    space = search_spaces.get(recipe.supernet.space, data.input_shape, data.num_classes)
    budget = plan_pipeline(recipe, data, space, trainer)
    base = Path(recipe.run.out_dir) / recipe.run.name
    base.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    if recipe.pipeline.latency_fraction_of_teacher is not None:  # timed before any training: an impossible one stops here
        recipe = _latency_budget(recipe, data, space, base)

    t = Stopwatch()
    if not recipe.teacher.checkpoint or not Path(recipe.teacher.checkpoint).exists():
        r = _stage(recipe, base, "teacher", distill=[], student__ce_weight=1.0)  # the teacher learns from the labels
        done = base / "teacher" / "final.json"
        if not done.exists():
            train_teacher(r)
        recipe = derive(recipe, {"teacher.checkpoint": str(base / "teacher" / "model.pt")})
    seconds["teacher"] = t.seconds()

    t = Stopwatch()
    pre = recipe.pipeline.supernet_checkpoint
    reused = None
    trained = (base / "supernet" / "final.json").exists()
    if pre and not train_supernet_anyway and not trained:
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
        if not trained:
            trainer.train(_stage(recipe, base, "supernet"))
        supernet_final = json.loads((base / "supernet" / "final.json").read_text())
        checkpoint = str(base / "supernet" / "checkpoints" / "last.pt")
    seconds["supernet"] = t.seconds()

    t = Stopwatch()
    changes: dict[str, Any] = {"search__checkpoint": checkpoint, "search__budget_mflops": budget}
    if recipe.search.budget_ms is not None and recipe.search.latency_table is None:
        changes["search__latency_table"] = _latency_table_here(recipe, space, base / "latency_table.json")
    if not trainer.weight_sharing and recipe.search.dna_tables is None:
        tables = base / "dna_tables.json"
        if not tables.exists():
            rank_stages(recipe, checkpoint, tables)
        changes["search__dna_tables"] = str(tables)
    r = _stage(recipe, base, "search", **changes)
    search = json.loads((base / "search" / "search.json").read_text()) if (base / "search/search.json").exists() \
        else run_search(r)
    seconds["search"] = t.seconds()

    t = Stopwatch()
    student = base / "student"
    if not (student / "arch.json").exists():
        best = str(base / "search" / "best_arch.json")
        if trainer.weight_sharing:
            ft = derive(recipe, {"train.lr": recipe.pipeline.finetune_lr, "train.warmup_epochs": 0.0})
            export_student(checkpoint, best, student, ft, recalibrate_batches=recipe.supernet.bn_batches,
                           finetune_epochs=recipe.pipeline.finetune_epochs)
        else:
            _train_searched(recipe, space, best, student)
    seconds["export"] = t.seconds()
    comparison = compare_models(recipe, data, student)
    quantized = None
    if recipe.pipeline.quantize:  # the int8 student: a run of nas-kd quantize, kept when done
        t = Stopwatch()
        qdir = base / "quantize"
        if not (qdir / "quantize.json").exists():
            from nas_kd.train.quantize import quantize_student

            qr = quantize_student(recipe, student, qdir, seeds=1, qat_epochs=recipe.pipeline.quantize_epochs,
                                  qat_lr=recipe.pipeline.finetune_lr, calibration_batches=8,
                                  threads=recipe.train.threads or 2)
            qdir.mkdir(parents=True, exist_ok=True)
            (qdir / "quantize.json").write_text(json.dumps(qr, indent=2) + "\n")
        quantized = json.loads((qdir / "quantize.json").read_text())["rows"]
        seconds["quantize"] = t.seconds()
    payload = {
        "teacher_checkpoint": recipe.teacher.checkpoint,
        "supernet": {"checkpoint": checkpoint, "reused": bool(reused),
                     **{k: supernet_final.get(k) for k in ("max_acc", "min_acc", "median_acc", "wall_seconds")}},
        "search": {k: search.get(k) for k in ("evaluator", "strategy", "budget_mflops", "budget_ms", "scored",
                                              "best_predicted_latency_ms", "best_measured_latency_ms", "wall_seconds")},
        **comparison,
        "student_dir": str(student), "pareto_plot": str(base / "search" / "pareto.png"),
        **({"int8": {k: {m: v[m] for m in ("acc_mean", "latency_ms_b1", "latency_ms_b32", "speedup_vs_fp32_b1",
                                            "speedup_vs_fp32_b32", "size_kb", "file")} for k, v in quantized.items()}}
           if quantized else {}),
        "stage_seconds_this_invocation": {k: round(v, 1) for k, v in seconds.items()},
    }
    result = write_result(base / "pipeline.json", payload, watch.seconds(), started)
    print_summary(result)
    return result


def _train_searched(recipe: Recipe, space, best_arch: str, student: Path) -> None:
    """Train the searched arch from its own initialisation (``pipeline.finetune_epochs`` with the recipe's train
    and distill settings) in ``student/finetune``, then save it as ``student/`` (arch.json, weights.pt)."""
    run = student / "finetune"
    r = derive(recipe, {"train.epochs": recipe.pipeline.finetune_epochs, "run.out_dir": str(student),
                        "run.name": "finetune"})
    arch = resolve_arch(space, best_arch)
    train_students(r, arch_student(space.name, arch))
    for name in ("weights.pt", "arch.json"):  # arch.json last: its presence says the stage is done
        shutil.copyfile(run / "student" / name, student / name)
