"""The ``blockwise`` supernet trainer (DNA, Li et al., CVPR 2020; the model is :mod:`nas_kd.dna.blockwise`): per
step every stage trains the sandwich of its own candidates on the teacher's stage inputs and outputs, one
teacher pass for all stages. Its supernet is not weight-sharing end to end: a search scores its archs
from the blockwise ranking tables (``nas-kd dna-rank``), and the searched student trains from its own init."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

import search_spaces
from nas_kd.config import SupernetConfig
from nas_kd.data import step_seed
from nas_kd.device import autocast
from nas_kd.dna.blockwise import BlockwiseSupernet, stage_io, stage_sandwich, teacher_channels
from nas_kd.job import Job
from nas_kd.train.loop import TrainLoop
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer
from nas_kd.train.setup import build_loop, start_run
from nas_kd.typecheck import Index


def train_blockwise(job: Job, cfg: SupernetConfig, num_random: int, *, resume: bool = False,
                    on_step: Callable[[TrainLoop], None] | None = None, show_progress: bool = True) -> dict[str, Any]:
    """Blockwise-train every stage of ``cfg.space`` against the job's teacher (each step: the max, the min and
    ``num_random`` random candidates of every stage); returns the final metrics."""
    started, run, device = start_run(job, resume)
    data = job.data
    space = search_spaces.get(cfg.space, data.input_shape, data.num_classes)
    teacher = job.teacher.module().to(device)
    tstages = job.teacher.stages
    widths = teacher_channels(teacher, tstages, data.input_shape)
    model = BlockwiseSupernet(space, widths, cfg.kernel_transform)
    loop = build_loop(job, run, model, device, on_step=on_step, show_progress=show_progress,
                      meta={"blockwise": model.meta()}, keep_epoch_checkpoints=cfg.keep_epoch_checkpoints)
    amp = job.train.amp

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        st = loop.state
        rng = random.Random(step_seed(job.seed, st.epoch, st.step))
        with autocast(device, amp):
            pairs = stage_io(teacher, tstages, x)
        stats: dict[str, float] = {"count": len(y)}
        for i, (inp, target) in enumerate(pairs, start=1):
            total = 0.0
            for cand in stage_sandwich(space, i, rng, num_random):
                with autocast(device, amp):
                    out = model.stage_forward(i, cand, inp).float()
                loss = F.mse_loss(out, target)
                loss.backward()
                total += loss.item()
            stats[f"mse_stage{i}"] = total / (2 + num_random) * len(y)
        return stats

    metrics = loop.fit(step, lambda epoch: {})
    final = {"mode": "blockwise", "space": cfg.space, "epochs": job.train.epochs, "seed": job.seed,
             "teacher_stages": tstages, "teacher_widths": widths, "device": str(device),
             "final_train_mse": {k: v for k, v in (metrics[-1] if metrics else {}).items() if k.startswith("train_mse")},
             "epoch_seconds": [m["elapsed_seconds"] for m in metrics],
             "checkpoint": str(run.last_checkpoint), "recipe": job.run.config}
    return loop.finish(final, started)


@SUPERNET_TRAINERS.register("blockwise")
@dataclass(kw_only=True)
class Blockwise(SupernetTrainer):
    """DNA's blockwise supervision (:func:`train_blockwise`); no weights shared end to end. ``num_random``: random
    candidates per stage and step, besides the max and the min."""

    weight_sharing = False
    num_random: Index = 2

    def stages_needed(self, n_stages: int) -> int:
        return n_stages + 1  # the input of the first stage and the output of every stage

    def train(self, job: Job, cfg: SupernetConfig, **kwargs: Any) -> dict[str, Any]:
        return train_blockwise(job, cfg, self.num_random, **kwargs)
