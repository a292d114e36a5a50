"""Train one student (or several, for mutual learning) with distillation terms.

The loss of student i is ``ce_weight x CE(hard labels)`` plus, for every term (a recipe's ``distill`` list,
parsed), ``weight x`` each loss the term's distiller returns (:mod:`nas_kd.distill`).
With no terms this is plain supervised training: the reference teacher, a single arch and the
rank-correlation ground truth all train here. Before the run directory is created, the terms are
checked, the teachers loaded and one dummy forward pass checks every module name and feature
shape and builds the distillers' connectors and heads; those train with the student (they are
part of the checkpoint, so resume is exact) and are never saved with it.

Without augmentation the teachers' logits do not change between epochs, so with
``train.cache_teacher`` (and no teacher features needed) they are computed once per run, keyed
by the row of the training split, instead of at every step.
"""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.checkpoint import save_checkpoint
from nas_kd.data import BatchIterator, DataBundle, step_seed
from nas_kd.device import autocast, to_memory_format
from nas_kd.distill import Distiller, Probe, Term, View, build_distiller
from nas_kd.errors import UserError
from nas_kd.evaluation import evaluate
from nas_kd.features import capture
from nas_kd.flops import count_flops, count_params
from nas_kd.students import Student, stage_names
from nas_kd.job import Job
from nas_kd.train import distributed as dist
from nas_kd.train.loop import TrainLoop
from nas_kd.train.setup import augments, build_loop, open_run, prepare


class Students(nn.Module):
    """What the training loop optimises and checkpoints: the students and each one's distillers."""

    def __init__(self, students: list[nn.Module], distillers: list[list[Distiller]]) -> None:
        super().__init__()
        self.students = nn.ModuleList(students)
        self.distillers = nn.ModuleList(nn.ModuleList(d) for d in distillers)


def _shapes(feats: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in feats.items()}


def _check_names(model: nn.Module, names: list[str], d: Distiller, who: str) -> None:
    """Refuse module names ``model`` lacks, or any name on a TorchScript model (no hooks), naming the term."""
    if names and isinstance(model, torch.jit.ScriptModule):
        raise d.error(f"{who} is a TorchScript model, whose intermediate features cannot be captured; use logit "
                      "methods (kd, alpha_div, multi_teacher) or give the teacher as model + checkpoint")
    modules = [n for n, _ in model.named_modules() if n]
    for name in names:
        if name not in modules:
            close = difflib.get_close_matches(name, modules, n=3)
            hint = f" (close: {', '.join(close)})" if close else ""
            raise d.error(f"{who} has no module {name!r}{hint}")


def probe(model: nn.Module, teachers: list[nn.Module], distillers: list[Distiller], student_stages, t_stages,
          data: DataBundle) -> None:
    """Resolve defaults, check module names and shapes on two training images, and build learnable parts."""
    for d in distillers:
        d.resolve(student_stages, t_stages, len(teachers))
        d.see_teachers(teachers)
        d.see_student(model)
        _check_names(model, d.student_modules(), d, "the student")
        for k, teacher in enumerate(teachers):
            _check_names(teacher, d.teacher_modules(k), d, f"teacher {k}")
    x = data.train.x[:2]
    s_names = sorted({n for d in distillers for n in d.student_modules()})
    was_training = model.training
    model.eval()
    with torch.no_grad():
        with capture(model, s_names) as feats:
            logits = model(x)
        t_shapes = []
        for k, teacher in enumerate(teachers):
            with capture(teacher, sorted({n for d in distillers for n in d.teacher_modules(k)})) as t_feats:
                teacher(x)
            t_shapes.append(_shapes(t_feats))
    model.train(was_training)
    p = Probe(tuple(logits.shape), _shapes(feats), t_shapes, student_stages, t_stages, data.num_classes)
    for d in distillers:
        d.bind(p)
    fitting = [d for d in distillers if d.uses_validation]
    if fitting:
        with torch.no_grad():
            val_logits = [torch.cat([t(data.val.x[i:i + 500]).float() for i in range(0, len(data.val), 500)])
                          for t in teachers]
        for d in fitting:
            d.fit_validation(val_logits, data.val.y)


def _feature_megabytes(teachers: list[nn.Module], names: list[list[str]], data: DataBundle, device: torch.device,
                       channels_last: bool) -> float:
    """What the teachers' maps ``names`` of every training row take in float16, from one row."""
    total = 0
    with torch.no_grad():
        for teacher, ns in zip(teachers, names):
            with capture(teacher, ns) as f:
                teacher(to_memory_format(data.train.x[:1].to(device), channels_last))
            total += sum(v.numel() for v in f.values())
    return total * 2 * len(data.train) / 2**20


def _teacher_cache(teachers: list[nn.Module], names: list[list[str]], data: DataBundle, batch_size: int,
                   device: torch.device, channels_last: bool) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Every teacher's logits for every training row, and its maps ``names`` in float16 on the CPU (a map that
    float16 cannot hold stays float32); valid only without augmentation."""
    logits, feats = [], []
    with torch.no_grad():
        for teacher, ns in zip(teachers, names):
            rows, maps = [], {n: [] for n in ns}
            for i in range(0, len(data.train), batch_size):
                with capture(teacher, ns) as f:
                    rows.append(teacher(to_memory_format(data.train.x[i:i + batch_size].to(device), channels_last)).float())
                for n in ns:
                    maps[n].append(f[n].float().cpu())
            logits.append(torch.cat(rows))
            whole = {n: torch.cat(v) for n, v in maps.items()}
            feats.append({n: (v.half() if torch.isfinite(v.half()).all() else v) for n, v in whole.items()})
    return logits, feats


def train_students(
    job: Job,
    student: Student,
    *,
    terms: list[Term] = (),
    ce_weight: float = 1.0,
    resume: bool = False,
    on_step: Callable[[TrainLoop], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``student`` on the job's data with ``ce_weight`` x cross-entropy plus the ``terms``
    (:func:`~nas_kd.distill.parse_terms` of a ``distill`` list), taught by the job's teachers; returns the final
    metrics.

    Writes ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``, ``model.pt`` (the best
    student's state dict, usable as ``teacher.checkpoint``), for a space's arch ``student/`` (and
    ``student1/``... with several students) in the exported-subnet format, and ``final.json``.
    """
    terms = list(terms)
    if ce_weight < 0:
        raise UserError(f"student.ce_weight must be >= 0, got {ce_weight}")
    if job.train.epochs < 0:
        raise UserError(f"train.epochs must be >= 0, got {job.train.epochs}")
    num_students = max([build_distiller(t).num_students for t in terms] + [1])
    started, device = prepare(job)
    data = job.data
    models = [student.make(data.input_shape, data.num_classes) for _ in range(num_students)]
    stages = student.stages or stage_names(models[0])
    distillers = [[build_distiller(t) for t in terms] for _ in models]
    needs_teacher = any(d.needs_teacher for d in distillers[0])
    used = list(job.teachers) if needs_teacher else []
    if needs_teacher and not used:
        raise UserError(f"{', '.join(t.name for t in terms)}: distillation needs a teacher, and none was given")
    teachers = [t.module() for t in used]
    for model, ds in zip(models, distillers):
        probe(model, teachers, ds, stages, [t.stages for t in used], data)
    bundle = Students(models, distillers)
    run = open_run(job, resume)
    teachers = [t.to(device) for t in teachers]
    cl, amp = job.train.channels_last, job.train.amp
    s_names = sorted({n for d in distillers[0] for n in d.student_modules()})
    t_names = [sorted({n for d in distillers[0] for n in d.teacher_modules(k)}) for k in range(len(teachers))]
    cached = None
    if teachers and job.train.cache_teacher and not augments(job) and dist.world_size() == 1 and (
            not any(t_names) or _feature_megabytes(teachers, t_names, data, device, cl) <= job.train.cache_teacher_features_mb):
        cached = _teacher_cache(teachers, t_names, data, job.batching.eval_batch_size, device, cl)
    loop = build_loop(job, run, bundle, device, on_step=on_step, show_progress=show_progress, with_index=True)

    def teacher_outputs(x: torch.Tensor, idx: torch.Tensor | None, cached_ok: bool = True) -> tuple[list[torch.Tensor], list[dict]]:
        if cached is not None and cached_ok:
            return ([c[idx] for c in cached[0]],
                    [{k: v[idx.cpu()].to(device).float() for k, v in f.items()} for f in cached[1]])
        logits, feats = [], []
        for teacher, names in zip(teachers, t_names):
            with torch.no_grad(), autocast(device, amp), capture(teacher, names) as f:
                logits.append(teacher(x).float())
            feats.append({k: v.float() for k, v in f.items()})
        return logits, feats

    on_val = [[d for d in ds if d.uses_validation_batches] for ds in distillers]
    val_batches = BatchIterator(data.val, job.batching.batch_size, shuffle=True, seed=job.seed, drop_last=True) \
        if any(on_val) else None
    val_epoch: dict[int, list] = {}

    def validation_steps() -> None:
        """Every method that learns on validation batches sees this step's one (seeded by epoch and step)."""
        st = loop.state
        if st.epoch not in val_epoch:
            val_epoch.clear()
            val_epoch[st.epoch] = list(val_batches.epoch(st.epoch)) or [(data.val.x, data.val.y)]
        batches = val_epoch[st.epoch]
        vx, vy = (t.to(device) for t in batches[st.step % len(batches)])
        vx = to_memory_format(vx, cl)
        with torch.no_grad():
            v_logits, v_feats = teacher_outputs(vx, None, cached_ok=False)
            for model, ds in zip(models, on_val):
                if ds:
                    with autocast(device, amp), capture(model, s_names) as f:
                        logits = model(vx).float()
                    view = View(vy, logits, {k: v.float() for k, v in f.items()}, v_logits, v_feats, [], st.epoch)
                    for d in ds:
                        with torch.enable_grad():
                            d.validation_step(view)

    def step(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> dict[str, float]:
        if val_batches is not None:
            validation_steps()
        t_logits, t_feats = teacher_outputs(x, idx)
        outs, inputs = [], []
        for i, (model, ds) in enumerate(zip(models, distillers)):
            xi, gen = x, torch.Generator().manual_seed(step_seed(job.seed, loop.state.epoch, loop.state.step) + i)
            for d in ds:  # a method may give each student its own view of the batch (kdcl's own augmentation)
                xi = d.student_input(xi, i, gen, data.pad_value)
            with autocast(device, amp), capture(model, s_names) as f:
                logits = model(xi).float()
            outs.append((logits, dict(f)))
            inputs.append(xi)
        n = len(y)
        stats: dict[str, float] = {"count": n}
        total = 0.0
        for i, ((logits, feats), ds) in enumerate(zip(outs, distillers)):
            view = View(y, logits, feats, t_logits, t_feats,
                        [o[0].detach() for j, o in enumerate(outs) if j != i], loop.state.epoch, inputs[i], models[i])
            loss = ce_weight * F.cross_entropy(logits, y, label_smoothing=job.train.label_smoothing)
            for term, d in zip(terms, ds):
                for name, value in d(view).items():
                    loss = loss + term.weight * value
                    if i == 0:
                        stats[name] = stats.get(name, 0.0) + value.item() * n
            total = total + loss
            suffix = "" if i == 0 else f"_s{i}"
            stats[f"loss{suffix}"] = loss.item() * n
            stats[f"acc{suffix}"] = (logits.argmax(1) == y).sum().item()
        total.backward()
        return stats

    def validate(epoch: int) -> dict[str, float]:
        out = {}
        for i, model in enumerate(models):
            suffix = "" if i == 0 else f"_s{i}"
            out |= {f"val_{k}{suffix}": v for k, v in evaluate(model, data.val, job.batching.eval_batch_size, cl).items()}
        bundle.train()
        return out

    metrics = loop.fit(step, validate)
    return _finish(job, student, models, distillers, metrics, run, loop, started, terms, ce_weight,
                   [t.source for t in used], device)


def finished_student(job: Job, model: nn.Module) -> dict[str, Any] | None:
    """The ``final.json`` of a :func:`train_students` run at ``job.run`` that finished with this config, its (best)
    student's weights (``model.pt``) loaded into ``model``; None when there is no such run (a command of several runs,
    killed after this one finished, continues past it)."""
    from nas_kd.checkpoint import load_checkpoint, model_state
    from nas_kd.runs import RunDir

    final = RunDir.finished(job.run)
    if final is not None:
        model.load_state_dict(model_state(load_checkpoint(job.run.path / "model.pt")))
    return final


def _finish(job, student, models, distillers, metrics, run, loop, started, terms, ce_weight, teachers,
            device) -> dict[str, Any]:
    """Test every student, save them (rank 0) and write ``final.json``."""
    from nas_kd.export import save_subnet

    cl, data = job.train.channels_last, job.data
    last = metrics[-1] if metrics else {}
    val = [last.get("val_acc" + ("" if i == 0 else f"_s{i}")) for i in range(len(models))]
    tests = [evaluate(m, data.test, job.batching.eval_batch_size, cl) for m in models]
    best = max(range(len(models)), key=lambda i: (val[i] if val[i] is not None else -1.0, -i))
    models = [m.to("cpu", memory_format=torch.contiguous_format) for m in models]
    saved = []
    if dist.is_main():
        save_checkpoint({"model": models[best].state_dict()}, run.path / "model.pt")
        if student.exportable:
            for i, m in enumerate(models):
                saved.append(str(save_subnet(m.eval(), run.path / ("student" if i == 0 else f"student{i}"),
                                             source=str(run.path))))
    flops = count_flops(models[best], (1, *data.input_shape))
    reports = {t.name: r for t, d in zip(terms, distillers[best])
               if (r := d.report(models[best], data.test, job.batching.eval_batch_size))}
    final = {
        **student.describe,
        "dataset": job.data.name, "epochs": job.train.epochs, "seed": job.seed, "train_images": len(data.train),
        "ce_weight": ce_weight, "distill": [t.spec() for t in terms],
        "validation_use": {t.name: use for t in terms if (use := build_distiller(t).validation_use())},
        "teachers": teachers,
        "test_acc": tests[best]["acc"], "test_loss": tests[best]["loss"], "val_acc": val[best],
        "best_student": best, "students_test_acc": [t["acc"] for t in tests], "students_val_acc": val,
        "accuracy_kind": "last epoch",
        "seconds_per_epoch": round(loop.state.elapsed / max(1, job.train.epochs), 2),
        "flops": flops, "mflops": flops / 1e6, "params": count_params(models[best]), "input_shape": list(data.input_shape),
        "device": str(device), "checkpoint": str(Path(run.path) / "model.pt"), "students": saved,
        **({"method_reports": reports} if reports else {}),
    }
    return loop.finish(final, started)
