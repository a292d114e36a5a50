"""``nas-kd run``: the whole job in one command: teacher -> supernet -> search -> export + distillation -> summary.

Every stage writes its own run directory under the pipeline's (``teacher``, ``supernet``, ``search``,
``student``) and is skipped when its result already exists, so a pipeline killed at
any moment continues when the same command is run again: an interrupted teacher, supernet or student
fine-tune from its last checkpoint, an interrupted search from the candidates it had scored (none is scored
twice), and a stage that wrote no checkpoint yet starts over; the figures are those of an uninterrupted run.
The teacher is trained only when asked (``train_teacher``: the command line does when ``teacher.checkpoint`` is
unset; a path that does not exist is an error). A trained supernet given as ``supernet_checkpoint`` is used instead of training one (the
command line checks that it matches the recipe: :func:`nas_kd.recipes.supernet_mismatches`), the way once-for-all
users start from a trained once-for-all network. The run ends with a teacher-vs-student summary.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import torch.nn as nn

import search_spaces
from nas_kd.config import PipelineConfig, TeacherConfig
from nas_kd.data import DataBundle
from nas_kd.distill import Term
from nas_kd.dna.ranking import rank_stages
from nas_kd.errors import BudgetError, OptionError, UserError
from nas_kd.evaluation import evaluate
from nas_kd.evaluators import supernet_free
from nas_kd.evaluators.context import check_teacher_stages, require_stages
from nas_kd.flops import teacher_fraction_mflops
from nas_kd.job import Job
from nas_kd.latency import build_table
from nas_kd.provenance import Stopwatch, origin, write_json_atomic, write_result
from nas_kd.errors import RunDirError
from nas_kd.locks import dir_locked
from nas_kd.runs import RunDir, write_config
from nas_kd.plans import SupernetPlan
from nas_kd.search.plan import SearchPlan
from nas_kd.search.run import run_search
from nas_kd.students import arch_student, resolve_arch
from nas_kd.summary import compare_models, print_summary
from nas_kd.teacher import build_model, teacher_from
from nas_kd.train.distill import train_students
from nas_kd.train.standalone import export_student, train_teacher
from search_spaces import StagedSpace


def _latency_table_here(job: Job, search: SearchPlan, space, path: Path) -> str:
    """A batch-1 latency table of the space timed on this machine (once; reused on a re-run)."""
    if not path.exists():
        started, watch = origin(), Stopwatch()
        table = build_table(space, threads=job.train.threads, runtime=search.cfg.runtime)
        write_result(path, table, watch.seconds(), started)
    return str(path)


def _latency_budget(job: Job, search: SearchPlan, fraction: float, teacher: nn.Module, space,
                    base: Path) -> SearchPlan:
    """``search`` with ``budget_ms`` = ``fraction`` (``pipeline.latency_fraction_of_teacher``) x the teacher's
    batch-1 latency measured here (as the space's latency table is timed: CPU, ``train.threads``) and that table; a
    budget below the space's fastest arch (predicted) is refused naming the key."""
    from nas_kd.latency import load_table, model_latency_ms, torch_threads

    table_path = search.cfg.latency_table or _latency_table_here(job, search, space, base / "latency_table.json")
    table = load_table(table_path)
    with torch_threads(table["threads"]):
        teacher_ms = model_latency_ms(teacher.eval(), job.data.input_shape, batch_size=table["batch_size"],
                                      device=table["device"])
    budget_ms = fraction * teacher_ms
    fastest = space.latency(space.min_arch(), table)
    if budget_ms < fastest:
        raise BudgetError(f"pipeline.latency_fraction_of_teacher {fraction:g}: {budget_ms:.3f} ms ({fraction:g} x the "
                          f"teacher's {teacher_ms:.3f} ms here) is below the fastest {space.name} arch "
                          f"({fastest:.3f} ms predicted): raise the fraction")
    return search.with_settings(budget_ms=budget_ms, latency_table=str(table_path))


def _check_latency_budget(job: Job, search: SearchPlan, space, base: Path) -> SearchPlan:
    """``search`` with its latency table (``search.latency_table``, or one timed here once); ``search.budget_ms``
    below the space's fastest arch (predicted by that table) is refused naming the key, before any training."""
    from nas_kd.latency import load_table

    table_path = search.cfg.latency_table or _latency_table_here(job, search, space, base / "latency_table.json")
    fastest = space.latency(space.min_arch(), load_table(table_path))
    if search.cfg.budget_ms < fastest:
        raise BudgetError(f"search.budget_ms {search.cfg.budget_ms:g}: below the fastest {space.name} arch "
                          f"({fastest:.4g} ms predicted by {table_path}): raise it to at least {fastest:.4g}")
    return search.with_settings(latency_table=str(table_path))


def _teacher_module(job: Job, train_teacher: TeacherConfig | None, data: DataBundle) -> nn.Module:
    """The teacher as it will be used: the job's (loaded: a corrupt file fails here), or, when it is yet to be
    trained, its model built untrained (its FLOPs and module names do not depend on the weights it will learn)."""
    if train_teacher is not None:
        return build_model(train_teacher, data.num_classes, data.in_channels)
    return job.teacher.module()


def plan_pipeline(job: Job, teacher: nn.Module, space: StagedSpace, supernet: SupernetPlan, search: SearchPlan,
                  pipeline: PipelineConfig) -> float | None:
    """Every fact of ``nas-kd run`` knowable before any training, checked; returns the FLOPs budget (MFLOPs; None:
    the max arch's).

    The ``teacher`` has the stage modules the supernet pairs with; the budget lies between the space's smallest
    and largest arch for the data's shape; the search's evaluators fit the supernet the mode trains (a blockwise
    supernet has no weights to share)."""
    stages = job.teacher.stages
    trainer = supernet.trainer
    check_teacher_stages(teacher, stages)
    n = len(space.stages)
    require_stages(stages, trainer.stages_needed(n), f"supernet.mode {supernet.mode!r}", False)
    for ev in search.evaluators:  # one needing more than the last stage pairs stage by stage
        require_stages(stages, ev.stages_needed(n), f"evaluator {ev.name}", ev.stages_needed(n) > 1)
    if not trainer.weight_sharing:
        reading = [ev.name for ev in search.evaluators if ev.reads_supernet]
        if reading:
            raise OptionError(f"search.evaluator: {', '.join(reading)} score(s) subnets with a weight-sharing "
                              f"supernet's weights, and supernet.mode {supernet.mode!r} trains none: pick "
                              f"from {', '.join(supernet_free())} (e.g. search.evaluator=dna with "
                              "search.strategy=dna-exhaustive)")
    if pipeline.latency_fraction_of_teacher is not None and search.cfg.budget_ms is not None:
        raise OptionError("pipeline.latency_fraction_of_teacher and search.budget_ms both set a latency budget: give one")
    budget = search.cfg.budget_mflops
    if budget is None and pipeline.budget_fraction_of_teacher is not None:
        budget = teacher_fraction_mflops(teacher, job.data.input_shape, pipeline.budget_fraction_of_teacher)
        where = f"pipeline.budget_fraction_of_teacher {pipeline.budget_fraction_of_teacher:g}: "
    else:
        where = "search.budget_mflops: "
    if budget is None:  # the search's default: the max arch's FLOPs
        return None
    try:
        space.check_budget(budget * 1e6)
    except BudgetError as e:
        raise BudgetError(f"{where}{e}") from None
    return budget


NEAR_CHANCE = 0.15  # a teacher within this share of the way from chance to 100 % is "near chance"


def check_teacher_accuracy(job: Job, teacher: nn.Module, pipeline: PipelineConfig) -> float | None:
    """The teacher's accuracy on the validation split, measured before any training; a teacher near chance, or
    more than ``pipeline.teacher_accuracy_margin`` below ``pipeline.teacher_accuracy``, is refused in one line
    naming the likely cause (inputs it was not trained on) and the option to set. ``None``: no validation split."""
    data = job.data
    if len(data.val) == 0:
        return None
    acc = evaluate(teacher, data.val, job.batching.eval_batch_size, job.train.channels_last)["acc"]
    chance = 1 / data.num_classes
    expected = pipeline.teacher_accuracy
    near = acc < chance + NEAR_CHANCE * (1 - chance)
    if near or (expected is not None and acc < expected - pipeline.teacher_accuracy_margin):
        said = f"near chance ({chance:.1%})" if near else f"far below the {expected:.1%} of pipeline.teacher_accuracy"
        norm = "" if data.mean is None else \
            f" (mean {[round(v, 3) for v in data.mean.tolist()]}, std {[round(v, 3) for v in data.std.tolist()]})"
        raise UserError(f"teacher: it scores {acc:.1%} on the validation split, {said}; it is fed "
                        f"{job.teacher.describe_inputs()}{norm if job.teacher.preprocess == 'data' else ''}: if it "
                        "was trained on other inputs, say which with teacher.preprocess (e.g. --set "
                        "teacher.preprocess=none for images in [0, 1], or {mean: [...], std: [...]}; from Python "
                        "nas_kd.Teacher.of(module, stages, preprocess=...)), else check teacher.checkpoint")
    return acc


STAGE_OUTPUTS = ("teacher", "supernet", "dna_tables.json", "search", "student", "quantize", "baselines",
                 "pipeline.json")


def same_recipe(base: Path, config: dict[str, Any]) -> None:
    """The one rule for a run directory a command made before: only the recipe that made it (its ``config.yaml``,
    written when the run starts) continues it once a stage has begun (a timed latency table is not one). Any changed key is refused, naming it, before anything is reused
    or redone: figures of one recipe are never reported under another's command."""
    started = [d for d in STAGE_OUTPUTS if (base / d).exists()]
    if not started:  # nothing made yet (or a start refused before its first stage): this recipe owns it
        base.mkdir(parents=True, exist_ok=True)
        write_config(config, base / "config.yaml")
        return
    changed = RunDir(base).changed_keys(config)
    if changed:
        raise RunDirError(f"{base} was made by another recipe ({'; '.join(changed[:4])}"
                          f"{'; ...' if len(changed) > 4 else ''}): run that recipe to continue it (its keys are in "
                          f"{base / 'config.yaml'}), or choose another run name (--set run.name=NAME; out= from "
                          "Python) to run this one")


INPUTS_FILE = "inputs.json"  # what the run's stages were made from, fingerprinted when its first stage began


def _sha(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def input_fingerprints(job: Job, supernet_checkpoint: str | None, latency_table: str | None) -> dict[str, str]:
    """sha256 prefixes of what a run reads from files its recipe names (the teacher's weights, the trained supernet
    it starts from, the latency table) and of the training and validation data as loaded."""
    import hashlib

    files = {"teacher.checkpoint": job.teacher.source, "pipeline.supernet_checkpoint": supernet_checkpoint,
             "search.latency_table": latency_table}
    out = {key: _sha(path) for key, path in files.items() if path and Path(path).is_file()}
    for split in ("train", "val"):
        part = getattr(job.data, split)
        h = hashlib.sha256(part.x.numpy().tobytes())
        h.update(part.y.numpy().tobytes())
        out[f"data.{split}"] = h.hexdigest()[:16]
    return out


def same_inputs(base: Path, fingerprints: dict[str, str]) -> None:
    """The files and data a run directory's stages were made from must be the ones it reads now: ``inputs.json``
    is written when the run starts; a re-run whose teacher weights, trained supernet, latency table or data differ
    (same paths, other contents) is refused, naming them, before anything is reused."""
    from nas_kd.provenance import write_json_atomic

    path = base / INPUTS_FILE
    started = [d for d in STAGE_OUTPUTS if (base / d).exists()]
    if not started or not path.exists():
        write_json_atomic(path, fingerprints)
        return
    before = json.loads(path.read_text())
    changed = [k for k in fingerprints if k in before and before[k] != fingerprints[k]]
    if changed:
        raise RunDirError(f"{base}: {', '.join(changed)} changed since this run started (other contents behind the "
                          "same recipe): its stages were made from the old ones; choose another run name "
                          "(--set run.name=NAME; out= from Python) to run with these")


def run_pipeline(job: Job, *, supernet: SupernetPlan, search: SearchPlan, pipeline: PipelineConfig,
                 terms: list[Term] = (), ce_weight: float = 1.0, train_teacher_cfg: TeacherConfig | None = None,
                 supernet_checkpoint: str | None = None, teacher_cfg: TeacherConfig | None = None,
                 baselines: list[tuple[str, Any, dict[str, Any]]] = ()) -> dict[str, Any]:
    """Run every stage not yet done in the job's run directory; returns ``pipeline.json`` (per-stage results, wall
    times, the summary).

    ``supernet`` and ``search`` are plans (:mod:`nas_kd.plans`: the sections with their components built),
    ``pipeline`` the recipe's section of that name; ``terms`` (with
    ``ce_weight`` x cross-entropy) distil the exported student. ``train_teacher_cfg``: train this teacher model
    from the labels first (else the job's teacher is the trained one). ``supernet_checkpoint``: a trained supernet
    to search instead of training one. ``baselines``: ``pipeline.baselines`` built (:func:`nas_kd.plans.pruner`:
    name, pruner, spec), each pruning ``teacher_cfg`` (the teacher's section: ``model``, ``kwargs``, ``checkpoint``).

    Everything knowable before training is checked first (:func:`plan_pipeline`), before the run directory
    exists. ``supernet.mode`` picks the supernet trainer (:data:`~nas_kd.train.SUPERNET_TRAINERS`); with a
    blockwise one (DNA) the pipeline ranks its stages (``dna_tables.json``), searches on those tables, and
    trains the student from its own initialisation for ``pipeline.finetune_epochs`` with the job's ``train``
    settings."""
    started, watch = origin(), Stopwatch()
    trainer = supernet.trainer
    data = job.data
    space = search_spaces.get(supernet.cfg.space, data.input_shape, data.num_classes)
    teacher = _teacher_module(job, train_teacher_cfg, data)
    budget = plan_pipeline(job, teacher, space, supernet, search, pipeline)
    check = pipeline.teacher_check and train_teacher_cfg is None
    teacher_val = check_teacher_accuracy(job, teacher, pipeline) if check else None
    base = job.run.path
    with dir_locked(base):  # a second command on this run directory is refused while this one runs
        same_recipe(base, job.run.config)
        same_inputs(base, input_fingerprints(job, supernet_checkpoint, search.cfg.latency_table))
        seconds: dict[str, float] = {}
        timed_here = search.cfg.budget_ms is not None and search.cfg.latency_table is None
        if pipeline.latency_fraction_of_teacher is not None:  # timed before any training: an impossible one stops here
            search = _latency_budget(job, search, pipeline.latency_fraction_of_teacher, teacher, space, base)
        elif search.cfg.budget_ms is not None:  # so is a budget in ms below what the fastest arch can do
            search = _check_latency_budget(job, search, space, base)

        t = Stopwatch()
        if train_teacher_cfg is not None:  # the teacher learns from the labels
            if not (base / "teacher" / "final.json").exists():
                train_teacher(job.derive(job.run.child("teacher", {"distill": [], "student.ce_weight": 1.0})),
                              train_teacher_cfg)
            trained = dataclasses.replace(train_teacher_cfg, checkpoint=str(base / "teacher" / "model.pt"))
            job = dataclasses.replace(job, teachers=(teacher_from(trained, data), *job.teachers[1:]))
            job = job.derive(config={"teacher.checkpoint": trained.checkpoint})
        seconds["teacher"] = t.seconds()

        t = Stopwatch()
        if supernet_checkpoint and not (base / "supernet" / "final.json").exists():
            checkpoint = supernet_checkpoint
            record = Path(supernet_checkpoint).with_suffix(".json")  # its training's figures, when beside it
            supernet_final = json.loads(record.read_text()) if record.exists() else {}
        else:
            if not (base / "supernet" / "final.json").exists():
                trainer.train(job.derive(job.run.child("supernet")), supernet.cfg)
            supernet_final = json.loads((base / "supernet" / "final.json").read_text())
            checkpoint = str(base / "supernet" / "checkpoints" / "last.pt")
        seconds["supernet"] = t.seconds()

        t = Stopwatch()
        changes: dict[str, Any] = {"checkpoint": checkpoint, "budget_mflops": budget}
        if timed_here:  # the table this run timed (above) goes into the search's recorded recipe
            changes["latency_table"] = search.cfg.latency_table
        if not trainer.weight_sharing and search.cfg.dna_tables is None:
            tables = base / "dna_tables.json"
            if not tables.exists():
                rank_stages(job, checkpoint, tables, bn_batches=supernet.cfg.bn_batches, probe_size=search.cfg.probe_size)
            changes["dna_tables"] = str(tables)
        search = search.with_settings(**changes)
        searched = base / "search" / "search.json"
        result = json.loads(searched.read_text()) if searched.exists() else run_search(
            job.derive(job.run.child("search", {f"search.{k}": v for k, v in changes.items()})), search)
        seconds["search"] = t.seconds()

        t = Stopwatch()
        student = base / "student"
        if not (student / "arch.json").exists():
            best = str(base / "search" / "best_arch.json")
            if trainer.weight_sharing:
                ft = job.derive(train={"lr": pipeline.finetune_lr, "warmup_epochs": 0.0})
                export_student(checkpoint, best, student, job=ft, terms=terms, ce_weight=ce_weight,
                               recalibrate_batches=supernet.cfg.bn_batches, finetune_epochs=pipeline.finetune_epochs)
            else:
                _train_searched(job, space, best, student, pipeline.finetune_epochs, terms, ce_weight)
        seconds["export"] = t.seconds()
        comparison = compare_models(job.teacher, data, student, job.batching.eval_batch_size)
        quantized = None
        if pipeline.quantize:  # the int8 student: a run of nas-kd quantize, kept when done
            t = Stopwatch()
            qdir = base / "quantize"
            if not (qdir / "quantize.json").exists():
                from nas_kd.train.quantize import quantize_student

                engine = search.cfg.runtime.removesuffix("-int8")  # measured in the runtime searched for, if any
                qr = quantize_student(job, student, qdir, terms=terms, ce_weight=ce_weight, seeds=1,
                                      qat_epochs=pipeline.quantize_epochs, qat_lr=pipeline.quantize_lr,
                                      calibration_batches=8, threads=job.train.threads or 2,
                                      engines=None if engine == "torch" else (engine,))
                write_json_atomic(qdir / "quantize.json", qr)
            quantized = json.loads((qdir / "quantize.json").read_text())
            seconds["quantize"] = t.seconds()
        pruned = {}
        for name, pruner, spec in baselines:  # the teacher pruned to the student's FLOPs, fine-tuned as it was
            t = Stopwatch()
            pruned[name] = _pruned_baseline(job, teacher_cfg, name, pruner, spec,
                                            comparison["student_mflops"], base / "baselines", pipeline, terms,
                                            ce_weight)
            seconds[f"baseline_{name}"] = t.seconds()
        payload = {
            "teacher_checkpoint": job.teacher.source, "teacher_val_acc": teacher_val,
            "supernet": {"checkpoint": checkpoint, "reused": checkpoint == supernet_checkpoint,
                         **{k: supernet_final.get(k) for k in ("max_acc", "min_acc", "median_acc", "wall_seconds")}},
            "search": {k: result.get(k) for k in ("evaluator", "strategy", "budget_mflops", "budget_ms", "scored",
                                                  "best_predicted_latency_ms", "best_measured_latency_ms",
                                                  "best_latency_ms_at_table_speed", "wall_seconds")},
            **comparison,
            "student_dir": str(student), "pareto_plot": str(base / "search" / "pareto.png"),
            **({"int8": {"shipped": quantized["shipped"]["row"],
                         **{k: {m: v[m] for m in ("acc_mean", "latency_ms_b1", "latency_ms_b32", "speedup_vs_own_fp32_b1",
                                                  "speedup_vs_own_fp32_b32", "int8_convs", "size_kb", "file")}
                            for k, v in quantized["rows"].items()}}}
               if quantized else {}),
            **({"baselines": pruned} if pruned else {}),
            "stage_seconds_this_invocation": {k: round(v, 1) for k, v in seconds.items()},
        }
        out = write_result(base / "pipeline.json", payload, watch.seconds(), started)
        print_summary(out)
        return out


def _pruned_baseline(job: Job, teacher_cfg: TeacherConfig, name: str, pruner: Any, spec: dict[str, Any],
                     mflops: float, where: Path, pipeline: PipelineConfig, terms: list[Term],
                     ce_weight: float) -> dict[str, Any]:
    """One ``pipeline.baselines`` entry: the teacher pruned by ``pruner`` to ``mflops`` and fine-tuned as the student
    was (``pipeline.finetune_epochs`` at ``pipeline.finetune_lr``, the same terms) in ``where/<name>``, kept once
    done; returns its figures."""
    from nas_kd.teacher import load_teacher
    from nas_kd.train.prune import prune_network

    out = where / name
    if not (out / "prune.json").exists():
        data = job.data
        if teacher_cfg.checkpoint is None:  # trained by this run
            teacher_cfg = dataclasses.replace(teacher_cfg, checkpoint=str(job.run.path / "teacher" / "model.pt"))
        network = load_teacher(teacher_cfg, data.num_classes, data.in_channels).requires_grad_(True)
        origin = {"model": teacher_cfg.model, "kwargs": teacher_cfg.kwargs, "num_classes": data.num_classes,
                  "in_channels": data.in_channels, "checkpoint": teacher_cfg.checkpoint}
        ft = job.derive(train={"lr": pipeline.finetune_lr, "warmup_epochs": 0.0})
        prune_network(ft, network, origin, pruner, spec, mflops, out, terms=terms, ce_weight=ce_weight,
                      finetune_epochs=pipeline.finetune_epochs)
    record = json.loads((out / "prune.json").read_text())
    return {k: record[k] for k in ("test_acc", "cut_test_acc", "mflops", "params", "ratio", "network")}


def _train_searched(job: Job, space, best_arch: str, student: Path, epochs: int, terms: list[Term],
                    ce_weight: float) -> None:
    """Train the searched arch from its own initialisation (``epochs`` with the job's train settings and the
    distillation ``terms``) in ``student/finetune``, then save it as ``student/`` (arch.json, weights.pt)."""
    run = student / "finetune"
    arch = resolve_arch(space, best_arch)
    train_students(job.derive(job.run.at(run), train={"epochs": epochs}), arch_student(space.name, arch), terms=terms,
                   ce_weight=ce_weight)
    shutil.copyfile(run / "student" / "weights.pt", student / "weights.pt")
    # arch.json last and atomically: its presence says the stage is done
    write_json_atomic(student / "arch.json", json.loads((run / "student" / "arch.json").read_text()))
