"""What every trainer does first: load the recipe's data, open the run directory, seed, build the loop."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from nas_kd.config import Recipe
from nas_kd.data import BatchIterator, DataBundle, load_dataset
from nas_kd.provenance import origin
from nas_kd.runs import RunDir
from nas_kd.train import distributed as dist
from nas_kd.train.common import build_optimizer, build_scheduler, resolve_device, seed_everything, set_threads
from nas_kd.train.loop import TrainLoop


def load_data(recipe: Recipe) -> DataBundle:
    """The recipe's dataset, split and normalised."""
    d = recipe.data
    return load_dataset(
        d.dataset, d.root, val_size=d.val_size, split_seed=d.split_seed,
        limit_train=d.limit_train, limit_test=d.limit_test,
    )


def train_batches(recipe: Recipe, data: DataBundle) -> BatchIterator:
    """Shuffled, augmented training batches seeded by the recipe."""
    return BatchIterator(
        data.train, recipe.data.batch_size, shuffle=True, seed=recipe.seed,
        augment_pad=recipe.data.augment_pad, pad_value=data.pad_value,
        flip=recipe.data.flip and data.flip, drop_last=True,
    )


def calibration_batches(recipe: Recipe, data: DataBundle) -> BatchIterator:
    """Shuffled, unaugmented training batches for BatchNorm recalibration."""
    return BatchIterator(data.train, recipe.data.batch_size, shuffle=True, seed=recipe.seed)


def start_run(recipe: Recipe, resume: bool) -> tuple[dict[str, str], RunDir, DataBundle, torch.device]:
    """Record the run's origin, join torchrun's process group if launched by it, open the run
    directory (rank 0 creates it), seed everything, set threads, load the data; returns the device."""
    started = origin()
    device = resolve_device(recipe.train.device)
    dist.init_from_env(device)
    device = dist.local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    run = RunDir.open(recipe, resume) if dist.is_main() else RunDir.of(recipe)
    dist.barrier()
    seed_everything(recipe.seed)
    set_threads(recipe.train.threads)
    return started, run, load_data(recipe), device


def build_loop(
    recipe: Recipe,
    run: RunDir,
    data: DataBundle,
    model: nn.Module,
    device: torch.device,
    *,
    resume: bool,
    on_step: Callable[[TrainLoop], None] | None,
    show_progress: bool,
    meta: dict[str, Any] | None = None,
) -> TrainLoop:
    """The training loop of ``model`` (on its device, channels_last if the recipe says so), resumed if asked.

    Under torchrun every rank starts from rank 0's weights.
    """
    model.to(device)
    if recipe.train.channels_last:
        model.to(memory_format=torch.channels_last)
    dist.broadcast_model(model)
    batches = train_batches(recipe, data)
    opt = build_optimizer(model, recipe.train)
    loop = TrainLoop(
        run, model, opt, build_scheduler(opt, recipe.train, len(batches)), batches, recipe.train.epochs,
        checkpoint_every_steps=recipe.train.checkpoint_every_steps, on_step=on_step,
        show_progress=show_progress, meta=meta,
    )
    if resume:
        loop.resume()
    return loop
