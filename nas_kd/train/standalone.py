"""Train one network from scratch: the teacher, or a single architecture of a space (optionally with KD).

Both go through :func:`train_standalone`: cross-entropy on the hard labels, plus, when a
teacher is given, ``kd_weight`` x Hinton KD at ``kd_temperature`` (the cross-entropy then
weighs ``1 - kd_weight``). Runs are resumable like every trainer's.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

import search_spaces
from nas_kd.checkpoint import save_checkpoint
from nas_kd.config import Recipe
from nas_kd.flops import count_flops, count_params
from nas_kd.losses import KDLoss
from nas_kd.provenance import write_result
from nas_kd.subnet import StaticNet, zero_init_residual
from nas_kd.teacher import build_model, load_teacher
from nas_kd.train import distributed as dist
from nas_kd.train.common import autocast, evaluate, to_memory_format
from nas_kd.train.loop import TrainLoop
from nas_kd.train.setup import build_loop, start_run


def train_standalone(
    recipe: Recipe,
    make_model: Callable[[int, int], nn.Module],
    describe: dict[str, Any],
    *,
    teacher_kd: bool = False,
    resume: bool = False,
    on_step: Callable[[TrainLoop], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``make_model(num_classes, in_channels)`` on ``recipe.data``; returns the final metrics.

    Writes ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``, ``model.pt`` (the state
    dict) and ``final.json`` (``describe`` plus test accuracy, FLOPs and params) in the run directory.
    """
    st_cfg = recipe.student
    if not 0.0 <= st_cfg.kd_weight <= 1.0:
        raise ValueError(f"student.kd_weight must be in [0, 1], got {st_cfg.kd_weight}")
    started, run, data, device = start_run(recipe, resume)
    model = make_model(data.num_classes, data.in_channels)
    teacher = load_teacher(recipe.teacher, data.num_classes, data.in_channels).to(device) if teacher_kd else None
    kd = KDLoss(temperature=st_cfg.kd_temperature)
    w = st_cfg.kd_weight if teacher_kd else 0.0
    loop = build_loop(recipe, run, data, model, device, resume=resume, on_step=on_step, show_progress=show_progress)
    opt, cl, amp = loop.optimizer, recipe.train.channels_last, recipe.train.amp

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        x, y = dist.shard(x, y)
        x = to_memory_format(x, cl)
        with autocast(device, amp):
            logits = model(x).float()
        loss = (1 - w) * F.cross_entropy(logits, y, label_smoothing=recipe.train.label_smoothing)
        if teacher is not None:
            with torch.no_grad(), autocast(device, amp):
                t_logits = teacher(x).float()
            loss = loss + w * kd(logits, t_logits)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        dist.average_gradients(model)
        opt.step()
        n = len(y)
        return {"loss": loss.item() * n, "acc": (logits.argmax(1) == y).sum().item(), "count": n}

    def validate(epoch: int) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(model, data.val, recipe.data.eval_batch_size, cl).items()}

    metrics = loop.fit(step, validate)
    test = evaluate(model, data.test, recipe.data.eval_batch_size, cl)
    model = model.to("cpu", memory_format=torch.contiguous_format)
    if dist.is_main():
        save_checkpoint({"model": model.state_dict()}, run.path / "model.pt")
    shape = (1, data.in_channels, data.image_size, data.image_size)
    final = {
        **describe,
        "dataset": recipe.data.dataset, "epochs": recipe.train.epochs, "seed": recipe.seed,
        "kd_weight": w, "kd_temperature": st_cfg.kd_temperature if w else None,
        "test_acc": test["acc"], "test_loss": test["loss"],
        "val_acc": metrics[-1]["val_acc"] if metrics else None, "accuracy_kind": "last epoch",
        "flops": count_flops(model, shape), "params": count_params(model),
        "device": str(device), "checkpoint": str(run.path / "model.pt"),
    }
    return write_result(run.path / "final.json", final, loop.state.elapsed, started) if dist.is_main() else final


def train_teacher(recipe: Recipe, **kwargs: Any) -> dict[str, Any]:
    """Train ``recipe.teacher.model`` with cross-entropy; ``model.pt`` is usable as ``teacher.checkpoint``."""
    return train_standalone(
        recipe, lambda nc, ic: build_model(recipe.teacher, nc, ic), {"model": recipe.teacher.model}, **kwargs
    )


def resolve_arch(space, arch: str | dict) -> dict[str, Any]:
    """``max``, ``min``, a JSON file (an arch, or ``{"arch": ...}``) or a dict, validated against ``space``."""
    if isinstance(arch, str) and arch in ("max", "min"):
        return space.max_arch() if arch == "max" else space.min_arch()
    if isinstance(arch, str):
        try:
            arch = json.loads(Path(arch).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"arch {arch}: not a readable JSON arch file ({e})") from None
        if isinstance(arch, dict) and isinstance(arch.get("arch"), dict):
            arch = arch["arch"]
    return space.validate(arch)


def train_arch(recipe: Recipe, arch: str | dict | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train one architecture of ``recipe.student.space`` from scratch (KD from the teacher if ``kd_weight`` > 0)."""
    space = search_spaces.get(recipe.student.space)
    arch = resolve_arch(space, recipe.student.arch if arch is None else arch)

    def make(nc: int, ic: int) -> nn.Module:
        return zero_init_residual(StaticNet(space.spec(arch, nc, ic)))

    describe = {"space": space.name, "arch": arch, "mflops": space.flops(arch) / 1e6}
    return train_standalone(recipe, make, describe, teacher_kd=recipe.student.kd_weight > 0, **kwargs)


def finetune(recipe: Recipe, model: nn.Module, epochs: int, run_dir: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Fine-tune an exported subnet in place for ``epochs`` (the recipe's train and student.kd_* settings)."""
    r = copy.deepcopy(recipe)
    r.train.epochs, r.run.out_dir, r.run.name = epochs, str(Path(run_dir).parent), Path(run_dir).name
    arch = getattr(model, "arch", None)
    describe = {"space": getattr(model, "space_name", None), "arch": arch, "finetuned_from": "supernet export"}
    if arch is not None:
        describe["mflops"] = search_spaces.get(describe["space"]).flops(arch) / 1e6
    return train_standalone(r, lambda nc, ic: model, describe, teacher_kd=r.student.kd_weight > 0, **kwargs)


def export_student(checkpoint: str | Path, arch: str | dict, out: str | Path, recipe: Recipe | None = None, *,
                   recalibrate_batches: int = 0, finetune_epochs: int = 0, torchscript: bool = False) -> dict[str, Any]:
    """Export ``arch`` of the supernet in ``checkpoint`` to the directory ``out``: BatchNorm recalibrated on
    ``recalibrate_batches`` training batches, then (optionally) fine-tuned for ``finetune_epochs`` in
    ``out/finetune`` with the recipe's train and student.kd_* settings. Returns a short report."""
    from nas_kd.bn import recalibrate_bn
    from nas_kd.export import export_subnet, save_subnet
    from nas_kd.supernet import load_supernet
    from nas_kd.train.setup import calibration_batches, load_data

    if (recalibrate_batches or finetune_epochs) and recipe is None:
        raise ValueError("recalibration and fine-tuning need a recipe (--recipe or --run) for the data")
    net = load_supernet(checkpoint)
    space = net.space
    arch = resolve_arch(space, arch)
    if recalibrate_batches:
        net.set_arch(arch)
        recalibrate_bn(net, calibration_batches(recipe, load_data(recipe)).epoch(0), recalibrate_batches,
                       channels_last=recipe.train.channels_last)
    subnet = export_subnet(net.eval(), arch)
    report = {"space": space.name, "mflops": space.flops(arch) / 1e6, "params": space.params(arch)}
    if finetune_epochs:
        final = finetune(recipe, subnet, finetune_epochs, Path(out) / "finetune")
        report |= {"test_acc": final["test_acc"], "finetune_epochs": finetune_epochs,
                   "kd_weight": final["kd_weight"], "finetune_result": str(Path(out) / "finetune/final.json")}
    saved = save_subnet(subnet.eval(), out, torchscript=torchscript, source=str(checkpoint))
    return {"out": str(saved), **report}
