"""Entry points that train one network through the distillation trainer (:mod:`nas_kd.train.distill`):
the teacher, a single architecture of a space, an exported subnet being fine-tuned; plus the export
of a supernet's subnet (recalibrate, export, fine-tune, save).

Each trains with ``ce_weight`` x cross-entropy plus distillation terms (none: plain supervised training). Runs are
resumable like every trainer's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

import search_spaces
from nas_kd.config import TeacherConfig
from nas_kd.distill import Term
from nas_kd.errors import UserError
from nas_kd.job import Job, RunSpec
from nas_kd.locks import dir_locked
from nas_kd.students import Student, arch_student, model_student, resolve_arch
from nas_kd.teacher import build_model
from nas_kd.train.distill import finished_student, train_students


def train_teacher(job: Job, cfg: TeacherConfig, **kwargs: Any) -> dict[str, Any]:
    """Train the model of a ``teacher`` section from its labels; ``model.pt`` is usable as ``teacher.checkpoint``."""
    student = Student(lambda shape, nc: build_model(cfg, nc, shape[0]), {"model": cfg.model}, list(cfg.stages), False)
    return train_students(job, student, **kwargs)


def train_arch(job: Job, space_name: str, arch: str | dict, **kwargs: Any) -> dict[str, Any]:
    """Train one architecture of the space ``space_name`` from scratch (``kwargs``: those of
    :func:`~nas_kd.train.distill.train_students`)."""
    space = search_spaces.get(space_name)
    return train_students(job, arch_student(space.name, resolve_arch(space, arch)), **kwargs)


def finetune(job: Job, model: nn.Module, epochs: int, run: RunSpec, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune an exported subnet in place for ``epochs`` in the run directory ``run`` (``kwargs``: those of
    :func:`~nas_kd.train.distill.train_students`). A run there that finished with this config (a command killed after
    it) is not redone: its weights are loaded into ``model``."""
    job = job.derive(run, train={"epochs": epochs})
    arch, space = getattr(model, "arch", None), getattr(model, "space_name", None)
    describe = {"space": space, "arch": arch, "finetuned_from": "supernet export"}
    return finished_student(job, model) or train_students(job, model_student(model, describe), **kwargs)


def export_student(checkpoint: str | Path, arch: str | dict, out: str | Path, *, job: Job | None = None,
                   terms: list[Term] = (), ce_weight: float = 1.0, recalibrate_batches: int = 0,
                   finetune_epochs: int = 0, torchscript: bool = False, onnx: bool = False) -> dict[str, Any]:
    """Export ``arch`` of the supernet in ``checkpoint`` to the directory ``out``: BatchNorm recalibrated on
    ``recalibrate_batches`` of the job's training batches, then (optionally) fine-tuned for ``finetune_epochs`` in
    ``out/finetune`` with the job's settings, ``ce_weight`` and the distillation ``terms`` (a killed fine-tune of
    the same config continues from its checkpoint; one that finished is reused). The inputs are checked first;
    then ``out`` is locked while it is written (a second export into it is refused). Returns a short report."""
    from nas_kd.bn import recalibrate_bn
    from nas_kd.checkpoint import load_supernet
    from nas_kd.data import calibration_batches
    from nas_kd.export import export_subnet, save_subnet

    if (recalibrate_batches or finetune_epochs) and job is None:
        raise UserError("recalibration and fine-tuning need data (--recipe or --run)")
    data = job.data if job is not None else None
    net = load_supernet(checkpoint, data.input_shape if data is not None else None)
    space = net.space
    arch = resolve_arch(space, arch)
    with dir_locked(out):
        if recalibrate_batches:
            net.set_arch(arch)
            recalibrate_bn(net, calibration_batches(data, job.batching.batch_size, job.seed).epoch(0),
                           recalibrate_batches, channels_last=job.train.channels_last)
        subnet = export_subnet(net.eval(), arch)
        report = {"space": space.name, "mflops": space.flops(arch) / 1e6, "params": space.params(arch)}
        if finetune_epochs:
            run = job.run.at(Path(out) / "finetune")
            final = finetune(job, subnet, finetune_epochs, run, terms=terms, ce_weight=ce_weight)
            report |= {"test_acc": final["test_acc"], "finetune_epochs": finetune_epochs,
                       "distill": final["distill"], "finetune_result": str(Path(out) / "finetune/final.json")}
        saved = save_subnet(subnet.eval(), out, torchscript=torchscript, onnx=onnx, source=str(checkpoint))
    if onnx:
        meta = json.loads((saved / "arch.json").read_text())
        report |= {k: meta[k] for k in ("onnx", "onnx_max_abs_diff", "onnx_latency_ms_batch1_cpu")}
    return {"out": str(saved), **report}
