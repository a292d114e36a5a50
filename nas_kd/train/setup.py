"""What every trainer does first: load the recipe's data, open the run directory, seed, build the loop."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from nas_kd.config import Recipe
from nas_kd.data import BatchIterator, DataBundle, load_data
from nas_kd.device import resolve_device
from nas_kd.provenance import origin
from nas_kd.runs import RunDir
from nas_kd.train import distributed as dist
from nas_kd.train.common import (
    build_optimizer,
    build_scheduler,
    seed_everything,
    set_threads,
)
from nas_kd.train.loop import TrainLoop


def train_batches(recipe: Recipe, data: DataBundle, *, with_index: bool = False) -> BatchIterator:
    """Shuffled, augmented training batches seeded by the recipe (``with_index``: also the split's rows)."""
    return BatchIterator(
        data.train, recipe.data.batch_size, shuffle=True, seed=recipe.seed,
        augment_pad=recipe.data.augment_pad, pad_value=data.pad_value,
        flip=recipe.data.flip and data.flip, drop_last=True, with_index=with_index,
    )


def augments(recipe: Recipe, data: DataBundle) -> bool:
    """Whether training batches are augmented (a model's output then differs from epoch to epoch)."""
    return bool(recipe.data.augment_pad) or (recipe.data.flip and data.flip)


def prepare(recipe: Recipe) -> tuple[dict[str, str], DataBundle, torch.device]:
    """Record the run's origin, join torchrun's process group if launched by it, seed everything,
    set threads and load the data (every check that needs no run directory); returns the device."""
    started = origin()
    device = resolve_device(recipe.train.device)
    dist.init_from_env(device)
    device = dist.local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(recipe.seed)
    set_threads(recipe.train.threads)
    return started, load_data(recipe.data), device


def open_run(recipe: Recipe, resume: bool) -> RunDir:
    """Open the run directory (rank 0 creates it); call it once the inputs are checked."""
    run = RunDir.open(recipe, resume) if dist.is_main() else RunDir.of(recipe)
    dist.barrier()
    return run


def start_run(recipe: Recipe, resume: bool) -> tuple[dict[str, str], RunDir, DataBundle, torch.device]:
    """:func:`prepare`, then :func:`open_run`."""
    started, data, device = prepare(recipe)
    return started, open_run(recipe, resume), data, device


def build_loop(
    recipe: Recipe,
    run: RunDir,
    data: DataBundle,
    model: nn.Module,
    device: torch.device,
    *,
    on_step: Callable[[TrainLoop], None] | None,
    show_progress: bool,
    meta: dict[str, Any] | None = None,
    with_index: bool = False,
    keep_epoch_checkpoints: bool = False,
    extra_state: Callable[[], dict[str, Any]] | None = None,
    load_extra_state: Callable[[dict[str, Any]], None] | None = None,
) -> TrainLoop:
    """The training loop of ``model`` (on its device, channels_last if the recipe says so), resumed from the run's
    checkpoint when it has one (``extra_state`` / ``load_extra_state``: a method's own state in the checkpoint).

    Under torchrun every rank starts from rank 0's weights.
    """
    model.to(device)
    if recipe.train.channels_last:
        model.to(memory_format=torch.channels_last)
    dist.broadcast_model(model)
    batches = train_batches(recipe, data, with_index=with_index)
    opt = build_optimizer(model, recipe.train)
    loop = TrainLoop(
        run, model, opt, build_scheduler(opt, recipe.train, len(batches)), batches, recipe.train.epochs,
        checkpoint_every_steps=recipe.train.checkpoint_every_steps, on_step=on_step,
        show_progress=show_progress, meta=meta, channels_last=recipe.train.channels_last,
        keep_epoch_checkpoints=keep_epoch_checkpoints, extra_state=extra_state, load_extra_state=load_extra_state,
    )
    if run.last_checkpoint.exists():  # RunDir.open let it be continued
        loop.resume()
    return loop
