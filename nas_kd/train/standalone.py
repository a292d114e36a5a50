"""Entry points that train one network through the distillation trainer (:mod:`nas_kd.train.distill`):
the teacher, a single architecture of a space, an exported subnet being fine-tuned; plus the export
of a supernet's subnet (recalibrate, export, fine-tune, save).

Each trains with ``student.ce_weight`` x cross-entropy plus the recipe's ``distill`` terms (none:
plain supervised training). Runs are resumable like every trainer's.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.nn as nn

import search_spaces
from nas_kd.config import Recipe, derive
from nas_kd.errors import UserError
from nas_kd.students import Student, arch_student, model_student, read_arch_file
from nas_kd.teacher import build_model
from nas_kd.train.distill import train_students


def train_teacher(recipe: Recipe, **kwargs: Any) -> dict[str, Any]:
    """Train ``recipe.teacher.model``; ``model.pt`` is usable as ``teacher.checkpoint``."""
    student = Student(lambda shape, nc: build_model(recipe.teacher, nc, shape[0]), {"model": recipe.teacher.model},
                      list(recipe.teacher.stages), False)
    return train_students(recipe, student, **kwargs)


def resolve_arch(space, arch: str | dict) -> dict[str, Any]:
    """``max``, ``min``, a JSON file (an arch, or ``{"arch": ...}``) or a dict, validated against ``space``."""
    if isinstance(arch, str) and arch in ("max", "min"):
        return space.max_arch() if arch == "max" else space.min_arch()
    if isinstance(arch, str):
        arch = read_arch_file(arch)[1]
    return space.validate(arch)


def train_arch(recipe: Recipe, arch: str | dict | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train one architecture of ``recipe.student.space`` from scratch with the recipe's distill terms."""
    space = search_spaces.get(recipe.student.space)
    arch = resolve_arch(space, recipe.student.arch if arch is None else arch)
    return train_students(recipe, arch_student(space.name, arch), **kwargs)


def finetune(recipe: Recipe, model: nn.Module, epochs: int, run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune an exported subnet in place for ``epochs`` (the recipe's train, student and distill settings)."""
    r = derive(recipe, {"train.epochs": epochs, "run.out_dir": str(Path(run_dir).parent), "run.name": Path(run_dir).name})
    arch, space = getattr(model, "arch", None), getattr(model, "space_name", None)
    describe = {"space": space, "arch": arch, "finetuned_from": "supernet export"}
    return train_students(r, model_student(model, describe), **kwargs)


def export_student(checkpoint: str | Path, arch: str | dict, out: str | Path, recipe: Recipe | None = None, *,
                   recalibrate_batches: int = 0, finetune_epochs: int = 0, torchscript: bool = False,
                   onnx: bool = False) -> dict[str, Any]:
    """Export ``arch`` of the supernet in ``checkpoint`` to the directory ``out``: BatchNorm recalibrated on
    ``recalibrate_batches`` training batches, then (optionally) fine-tuned for ``finetune_epochs`` in
    ``out/finetune`` with the recipe's train, student and distill settings (a killed fine-tune of the same
    recipe continues from its checkpoint). Returns a short report."""
    from nas_kd.bn import recalibrate_bn
    from nas_kd.data import calibration_batches, load_data
    from nas_kd.export import export_subnet, save_subnet
    from nas_kd.checkpoint import load_supernet

    if (recalibrate_batches or finetune_epochs) and recipe is None:
        raise UserError("recalibration and fine-tuning need a recipe (--recipe or --run) for the data")
    data = load_data(recipe.data) if recipe is not None and (recalibrate_batches or finetune_epochs) else None
    net = load_supernet(checkpoint, data.input_shape if data is not None else None)
    space = net.space
    arch = resolve_arch(space, arch)
    if recalibrate_batches:
        net.set_arch(arch)
        recalibrate_bn(net, calibration_batches(data, recipe.data.batch_size, recipe.seed).epoch(0), recalibrate_batches,
                       channels_last=recipe.train.channels_last)
    subnet = export_subnet(net.eval(), arch)
    report = {"space": space.name, "mflops": space.flops(arch) / 1e6, "params": space.params(arch)}
    if finetune_epochs:
        final = finetune(recipe, subnet, finetune_epochs, Path(out) / "finetune")
        report |= {"test_acc": final["test_acc"], "finetune_epochs": finetune_epochs,
                   "distill": final["distill"], "finetune_result": str(Path(out) / "finetune/final.json")}
    saved = save_subnet(subnet.eval(), out, torchscript=torchscript, onnx=onnx, source=str(checkpoint))
    if onnx:
        meta = json.loads((saved / "arch.json").read_text())
        report |= {k: meta[k] for k in ("onnx", "onnx_max_abs_diff", "onnx_latency_ms_batch1_cpu")}
    return {"out": str(saved), **report}
