"""Sandwich-rule supernet training with in-place distillation (BigNAS / OFA / AlphaNet style).

Each step trains the max subnet, the min subnet and ``num_random`` random subnets (drawn by
the recipe's sampler, seeded by (seed, epoch, step), so a resumed run and every torchrun rank
draw the same ones) on the same batch, accumulating gradients, then takes one optimiser step. The max subnet learns
from the hard labels (plus, optionally, the fixed teacher); the others learn from soft
labels: the max subnet's detached logits (``inplace``), the fixed teacher's (``teacher``),
or a weighted mix of both (``mix``), through the recipe's ``supernet.distill`` terms (logit methods of
:mod:`nas_kd.distill`, e.g. ``[{name: alpha_div}]``); ``none`` trains every subnet on the hard labels.
"""
from __future__ import annotations

import random
from typing import Any, Callable

import torch
import torch.nn.functional as F

import search_spaces
from nas_kd.bn import recalibrate_bn
from nas_kd.config import Recipe
from nas_kd.data import DataBundle, calibration_batches, step_seed
from nas_kd.device import autocast
from nas_kd.distill import View, build_distiller, parse_terms
from nas_kd.errors import UserError
from nas_kd.evaluation import evaluate
from nas_kd.losses.functional import kd_loss
from nas_kd.supernet import Supernet
from nas_kd.teacher import load_teacher
from nas_kd.train import distributed as dist
from nas_kd.train.loop import TrainLoop
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer
from nas_kd.train.setup import build_loop, start_run
from search_spaces import SAMPLERS


def eval_archs(space, n_random: int, seed: int) -> dict[str, dict]:
    """The archs evaluated every epoch: max, min and ``n_random`` fixed random ones."""
    rng = random.Random(seed)
    return {"max": space.max_arch(), "min": space.min_arch(), **{f"rand{i}": space.sample(rng) for i in range(n_random)}}


def median_flops_arch(space, seed: int, n: int = 201) -> dict:
    """The arch of median FLOPs among ``n`` uniform samples (a fixed 'typical' subnet for reports)."""
    rng = random.Random(seed)
    archs = sorted((space.sample(rng) for _ in range(n)), key=space.flops)
    return archs[n // 2]


def subnet_accuracy(net: Supernet, arch: dict, data: DataBundle, split: str, recipe: Recipe) -> float:
    """Top-1 accuracy of ``arch`` on ``split`` after BatchNorm recalibration on training batches."""
    cl = recipe.train.channels_last
    net.set_arch(arch)
    recalibrate_bn(net, calibration_batches(data, recipe.data.batch_size, recipe.seed).epoch(0), recipe.supernet.bn_batches, channels_last=cl)
    return evaluate(net, getattr(data, split), recipe.data.eval_batch_size, cl)["acc"]


def train_supernet(
    recipe: Recipe,
    *,
    resume: bool = False,
    on_step: Callable[[TrainLoop], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train the supernet of ``recipe.supernet.space`` by the sandwich rule; returns the final metrics
    (test accuracy of max / min). ``supernet.mode`` picks the trainer (:data:`SUPERNET_TRAINERS`)."""
    cfg = recipe.supernet
    if cfg.mode != "sandwich":
        raise UserError(f"supernet.mode {cfg.mode!r}: train_supernet trains 'sandwich' supernets "
                         f"(SUPERNET_TRAINERS: {', '.join(SUPERNET_TRAINERS.available())})")
    terms = parse_terms(cfg.distill, "supernet.distill", logits_only=True)
    if not terms and cfg.soft_labels != "none":
        raise UserError(f"supernet.distill is empty but soft_labels is {cfg.soft_labels!r}: give a term "
                         "(e.g. [{name: alpha_div}]) or set soft_labels: none")
    distillers = [build_distiller(t) for t in terms]
    for d in distillers:
        d.resolve(None, [[]], 1)  # one soft-label source plays the teacher
    SAMPLERS.check_options(cfg.sampler, {}, "supernet.sampler", given=("space",))
    search_spaces.get(cfg.space)  # an unknown name fails before the run directory exists
    started, run, data, device = start_run(recipe, resume)
    space = search_spaces.get(cfg.space, data.input_shape, data.num_classes)
    sampler = SAMPLERS.build(cfg.sampler, space=space)
    needs_teacher = cfg.soft_labels != "inplace" or cfg.max_teacher_weight > 0
    teacher = load_teacher(recipe.teacher, data.num_classes, data.in_channels).to(device) if needs_teacher else None
    net = space.build_supernet(kernel_transform=cfg.kernel_transform)
    loop = build_loop(recipe, run, data, net, device, on_step=on_step, show_progress=show_progress,
                      meta={"supernet": net.meta()}, keep_epoch_checkpoints=cfg.keep_epoch_checkpoints)
    amp = recipe.train.amp

    def distill(out: torch.Tensor, y: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        view = View(y, out, {}, [soft])
        return sum(t.weight * v for t, d in zip(terms, distillers) for v in d(view).values())

    def forward(arch: dict, x: torch.Tensor) -> torch.Tensor:
        net.set_arch(arch)
        with autocast(device, amp):
            return net(x).float()

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        st = loop.state
        rng = random.Random(step_seed(recipe.seed, st.epoch, st.step))
        t_logits = None
        if teacher is not None:
            with torch.no_grad(), autocast(device, amp):
                t_logits = teacher(x).float()
        logits = forward(space.max_arch(), x)
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.train.label_smoothing)
        if cfg.max_teacher_weight > 0:
            loss = loss + cfg.max_teacher_weight * kd_loss(logits, t_logits, 1.0)
        loss.backward()
        soft = logits.detach()
        stats = {"loss_max": loss.item() * len(y), "acc": (logits.argmax(1) == y).sum().item(), "count": len(y)}
        others = [space.min_arch()] + sampler.sample(rng, cfg.num_random)
        total = 0.0
        for arch in others:
            out = forward(arch, x)
            if cfg.soft_labels == "none":
                sub_loss = F.cross_entropy(out, y, label_smoothing=recipe.train.label_smoothing)
            elif cfg.soft_labels == "inplace":
                sub_loss = distill(out, y, soft)
            elif cfg.soft_labels == "teacher":
                sub_loss = distill(out, y, t_logits)
            else:
                sub_loss = cfg.mix_weight * distill(out, y, t_logits) + (1 - cfg.mix_weight) * distill(out, y, soft)
            sub_loss.backward()
            total += sub_loss.item()
        stats["loss_distill"] = total / max(1, len(others)) * len(y)
        return stats

    watched = eval_archs(space, cfg.eval_random_archs, recipe.seed)

    def validate(epoch: int) -> dict[str, float]:
        out = {f"val_acc_{name}": subnet_accuracy(net, arch, data, "val", recipe) for name, arch in watched.items()}
        net.train()
        return out

    loop.fit(step, validate)
    median = median_flops_arch(space, recipe.seed)
    final = {
        "space": cfg.space, "dataset": recipe.data.dataset, "epochs": recipe.train.epochs, "seed": recipe.seed,
        "recipe": recipe.to_dict(), "accuracy_kind": "last epoch, after BN recalibration",
        "device": str(device), "world_size": dist.world_size(),
        "max_acc": subnet_accuracy(net, space.max_arch(), data, "test", recipe),
        "min_acc": subnet_accuracy(net, space.min_arch(), data, "test", recipe),
        "median_acc": subnet_accuracy(net, median, data, "test", recipe),
        "max_mflops": space.flops(space.max_arch()) / 1e6, "min_mflops": space.flops(space.min_arch()) / 1e6,
        "median_mflops": space.flops(median) / 1e6, "median_arch": median,
        "checkpoint": str(run.last_checkpoint),
    }
    return loop.finish(final, started)


SUPERNET_TRAINERS.register("sandwich")(SupernetTrainer(train_supernet, weight_sharing=True))
