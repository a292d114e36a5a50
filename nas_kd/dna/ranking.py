"""Blockwise ranking: score every candidate of every stage against the teacher on held-out images.

For each stage and each of its candidates (every combination of the stage's choices), the stage's
BatchNorm statistics are recalibrated on teacher features of training images, then the candidate
maps the teacher's stage i-1 features of the probe (validation) images and is compared with the
teacher's stage i features:

* ``rel_l1``: mean |s - t| / std(t) (what DNA ranks with);
* ``nmse``: mean (s - t)^2 / var(t);
* ``cosine``: 1 - mean over images of cos(s, t) (features flattened per image);
* ``mse``: the raw per-element MSE (not normalised; for the normalisation ablation).

The table also holds each candidate's FLOPs for every input width and its parameters.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from nas_kd.bn import recalibrate_bn
from nas_kd.data import BatchIterator
from nas_kd.device import resolve_device
from nas_kd.dna.blockwise import BlockwiseSupernet, load_blockwise, teacher_channels
from nas_kd.errors import UserError
from nas_kd.features import capture
from nas_kd.job import Job
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.subnet import shape_text

SCORES = ("rel_l1", "nmse", "cosine", "mse")


@torch.no_grad()
def teacher_features(teacher, stages: list[str], batches: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """The teacher's stage outputs for each batch."""
    out: dict[str, list[torch.Tensor]] = {s: [] for s in stages}
    with capture(teacher, stages) as feats:
        for x in batches:
            teacher(x)
            for s in stages:
                out[s].append(feats[s].float())
    return out


@torch.no_grad()
def candidate_scores(model: BlockwiseSupernet, stage: int, cand: dict, calib: list[torch.Tensor],
                     probe_in: list[torch.Tensor], probe_t: list[torch.Tensor]) -> dict[str, float]:
    """Recalibrate the stage's BatchNorm for ``cand``, then its scores on the probe features."""
    module = model.activate(stage, cand)
    recalibrate_bn(module, [model.inp[stage - 1](x) for x in calib], len(calib))
    abs_err = sq_err = cos = n_el = n_img = 0.0
    std = torch.cat([t.reshape(-1) for t in probe_t]).std().item()
    for x, t in zip(probe_in, probe_t):
        s = model.stage_forward(stage, cand, x).float()
        abs_err += (s - t).abs().sum().item()
        sq_err += ((s - t) ** 2).sum().item()
        cos += F.cosine_similarity(s.flatten(1), t.flatten(1), dim=1).sum().item()
        n_el += t.numel()
        n_img += len(t)
    mse = sq_err / n_el
    return {"rel_l1": abs_err / n_el / std, "nmse": mse / std**2, "cosine": 1.0 - cos / n_img, "mse": mse}


def rank_stages(job: Job, checkpoint: str | Path, out: str | Path, *, bn_batches: int, probe_size: int,
                show_progress: bool = True) -> dict[str, Any]:
    """Score every candidate of every stage of the blockwise supernet in ``checkpoint`` against the job's teacher
    (BatchNorm recalibrated on ``bn_batches`` training batches, scored on ``probe_size`` validation images);
    writes ``out`` (JSON)."""
    started, watch = origin(), Stopwatch()
    data = job.data
    device = resolve_device(job.train.device)
    teacher = job.teacher.module().to(device)
    model = load_blockwise(checkpoint).to(device).eval()
    space, tstages = model.space, job.teacher.stages
    if tuple(data.input_shape) != model.space.input_shape:
        raise UserError(f"{checkpoint} was trained on {model.space.describe()}, the data is "
                        f"{shape_text(data.input_shape)}")
    widths = teacher_channels(teacher, tstages, data.input_shape)
    if list(widths) != list(model.teacher_widths):
        raise UserError(f"{checkpoint} was trained against teacher stages of widths {list(model.teacher_widths)}, "
                        f"but teacher.stages {tstages} of the recipe's teacher have widths {widths}: rank it with "
                        "the teacher and stages it was trained with")
    bs = job.batching.batch_size
    calib_x = []
    for x, _ in BatchIterator(data.train, bs, shuffle=True, seed=job.seed).epoch(0):
        if len(calib_x) == bn_batches:
            break
        calib_x.append(x.to(device))
    probe = data.val.x[:probe_size].to(device)
    probe_x = [probe[i : i + bs * 4] for i in range(0, len(probe), bs * 4)]
    calib_f, probe_f = teacher_features(teacher, tstages, calib_x), teacher_features(teacher, tstages, probe_x)
    stages, seconds = [], []
    for i in range(1, len(space.stages) + 1):
        t = Stopwatch()
        cands = space.stage_candidates(i)
        cins = [space.stem_width] if i == 1 else sorted(space.stages[i - 2].widths)
        rows = []
        for cand in tqdm(cands, desc=f"stage {i}", disable=None if show_progress else True, leave=False):
            scores = candidate_scores(model, i, cand, calib_f[tstages[i - 1]], probe_f[tstages[i - 1]],
                                      probe_f[tstages[i]])
            rows.append({"cand": cand, **scores, "flops": {str(c): space.stage_flops(i, cand, c) for c in cins}})
        stages.append({"stage": i, "candidates": rows})
        seconds.append(round(t.seconds(), 2))
    payload = {"space": space.name, "input_shape": list(space.input_shape), "num_classes": space.num_classes,
               "checkpoint": str(checkpoint), "scores": list(SCORES), "stages": stages,
               "stage_seconds": seconds, "probe_size": len(probe), "bn_batches": len(calib_x)}
    return write_result(out, payload, watch.seconds(), started)
