"""What every trainer does first: start the job (device, torchrun, seed, threads), open the run directory, build
the loop."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn as nn

from nas_kd.data import BatchIterator
from nas_kd.device import resolve_device
from nas_kd.job import Job
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


def train_batches(job: Job, *, with_index: bool = False) -> BatchIterator:
    """Shuffled, augmented training batches seeded by the job (``with_index``: also the split's rows)."""
    b, data = job.batching, job.data
    return BatchIterator(
        data.train, b.batch_size, shuffle=True, seed=job.seed, augment_pad=b.augment_pad, pad_value=data.pad_value,
        flip=b.flip and data.flip, drop_last=True, with_index=with_index,
    )


def augments(job: Job) -> bool:
    """Whether training batches are augmented (a model's output then differs from epoch to epoch)."""
    return bool(job.batching.augment_pad) or (job.batching.flip and job.data.flip)


def prepare(job: Job) -> tuple[dict[str, str], torch.device]:
    """Record the run's origin, join torchrun's process group if launched by it, seed everything and set threads
    (every check that needs no run directory comes before); returns the origin and the device."""
    started = origin()
    device = resolve_device(job.train.device)
    dist.init_from_env(device)
    device = dist.local_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    seed_everything(job.seed)
    set_threads(job.train.threads)
    return started, device


def open_run(job: Job, resume: bool) -> RunDir:
    """Open the run directory (rank 0 creates it); call it once the inputs are checked."""
    run = RunDir.open(job.run, resume) if dist.is_main() else RunDir.of(job.run)
    dist.barrier()
    return run


def start_run(job: Job, resume: bool) -> tuple[dict[str, str], RunDir, torch.device]:
    """:func:`prepare`, then :func:`open_run`."""
    started, device = prepare(job)
    return started, open_run(job, resume), device


def build_loop(
    job: Job,
    run: RunDir,
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
    """The training loop of ``model`` (on its device, channels_last if ``train.channels_last``), resumed from the run's
    checkpoint when it has one (``extra_state`` / ``load_extra_state``: a method's own state in the checkpoint).

    Under torchrun every rank starts from rank 0's weights.
    """
    model.to(device)
    cfg = job.train
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    dist.broadcast_model(model)
    batches = train_batches(job, with_index=with_index)
    opt = build_optimizer(model, cfg)
    loop = TrainLoop(
        run, model, opt, build_scheduler(opt, cfg, len(batches)), batches, cfg.epochs,
        checkpoint_every_steps=cfg.checkpoint_every_steps, on_step=on_step,
        show_progress=show_progress, meta=meta, channels_last=cfg.channels_last,
        keep_epoch_checkpoints=keep_epoch_checkpoints, extra_state=extra_state, load_extra_state=load_extra_state,
    )
    if run.last_checkpoint.exists():  # RunDir.open let it be continued
        loop.resume()
    return loop
