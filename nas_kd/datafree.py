"""``nas-kd synthesize``: training inputs made from the teacher alone (data-free distillation).

DeepInversion (Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020):
a batch of inputs, started from noise, is optimised (Adam) so that

* the teacher classifies each input as its target class (class-balanced targets): cross-entropy;
* every BatchNorm layer of the teacher sees, on the batch, the mean and variance it stored in training:
  ``bn_weight`` x sum over layers of ||mu_batch - running_mean||_2 + ||var_batch - running_var||_2;
* natural-image priors keep the inputs smooth and bounded: ``tv_weight`` x the total variation (mean squared
  difference of neighbouring pixels) and ``l2_weight`` x the mean squared input;
* with a student (Adaptive DeepInversion), ``competition_weight`` x (1 - JS(teacher || student)): the inputs
  also seek where the student disagrees with the teacher.

Each step sees the batch randomly shifted by up to ``jitter`` pixels (the paper's jitter). The inputs live in
the normalised space of the recipe's data (the space the teacher was trained in); the dataset written holds them
as float32 with that normalisation (``mean``, ``std``) recorded, and ``data.synthetic`` trains on it while the
real test split (normalised alike) stays for evaluation. Batches are written one file each as they finish, so a
killed run continues with the next batch; the dataset file is assembled from them at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from nas_kd.errors import UserError
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.locks import holding

DATASET_FILE = "synthetic.npz"


@dataclass(frozen=True)
class InversionSettings:
    """The DeepInversion loss weights and optimiser (the paper's CIFAR-10 settings, scaled to these inputs)."""

    iterations: int = 2000
    lr: float = 0.1
    bn_weight: float = 1.0
    tv_weight: float = 1e-4
    l2_weight: float = 1e-5
    competition_weight: float = 0.0
    jitter: int = 2


def bn_layers(teacher: nn.Module) -> list[nn.BatchNorm2d]:
    """The teacher's BatchNorm layers; none: a one-line error naming the fix."""
    found = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
    if not found:
        raise UserError("nas-kd synthesize: the teacher has no BatchNorm layers with running statistics, which "
                        "DeepInversion matches; give a teacher with BatchNorm, or train the student on real images")
    return found


class BNStatistics:
    """Forward hooks that sum, over BatchNorm layers, the distance between the batch's statistics of each layer's
    input and the layer's running ones."""

    def __init__(self, layers: list[nn.BatchNorm2d]) -> None:
        self.losses: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in layers]

    def _hook(self, module: nn.BatchNorm2d, inputs: tuple, _out: Any) -> None:
        x = inputs[0]
        mean = x.mean(dim=(0, 2, 3))
        var = x.permute(1, 0, 2, 3).flatten(1).var(1, unbiased=False)
        self.losses.append(torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2))

    def pop(self) -> torch.Tensor:
        total = torch.stack(self.losses).sum()
        self.losses = []
        return total

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean()


def js_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    p, q = torch.softmax(p_logits, 1), torch.softmax(q_logits, 1)
    m = (0.5 * (p + q)).clamp_min(1e-12).log()
    return 0.5 * (F.kl_div(m, p, reduction="batchmean") + F.kl_div(m, q, reduction="batchmean"))


def invert_batch(teacher: nn.Module, targets: torch.Tensor, shape: tuple[int, int, int], settings: InversionSettings,
                 generator: torch.Generator, student: nn.Module | None = None,
                 on_iteration: Any = None) -> tuple[torch.Tensor, list[float]]:
    """One batch of inputs for ``targets`` (their class labels); returns the inputs and the BN-statistics loss
    at every iteration."""
    teacher.eval()
    device = targets.device
    x = torch.randn((len(targets), *shape), generator=generator).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=settings.lr, betas=(0.5, 0.9))
    hooks = BNStatistics(bn_layers(teacher))
    history = []
    frozen = [(p, p.requires_grad) for p in (student.parameters() if student is not None else [])]
    for p, _ in frozen:  # the competition term moves the inputs, never the student
        p.requires_grad_(False)
    try:
        for _ in range(settings.iterations):
            dx, dy = (int(v) for v in torch.randint(-settings.jitter, settings.jitter + 1, (2,), generator=generator))
            shifted = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
            opt.zero_grad(set_to_none=True)
            logits = teacher(shifted)
            bn = hooks.pop()
            loss = (F.cross_entropy(logits, targets) + settings.bn_weight * bn
                    + settings.tv_weight * total_variation(shifted) + settings.l2_weight * shifted.pow(2).mean())
            if student is not None and settings.competition_weight > 0:
                loss = loss + settings.competition_weight * (1 - js_divergence(logits, student.eval()(shifted)))
            loss.backward()
            opt.step()
            history.append(bn.item())
            if on_iteration is not None:
                on_iteration()
    finally:
        hooks.close()
        for p, flag in frozen:
            p.requires_grad_(flag)
    return x.detach(), history


@holding("out")
def synthesize(teacher: nn.Module, *, num_classes: int, shape: tuple[int, int, int], mean: torch.Tensor,
               std: torch.Tensor, out: str | Path, num_images: int, batch_size: int, settings: InversionSettings,
               seed: int = 0, student: nn.Module | None = None, show_progress: bool = True,
               info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``num_images`` synthetic inputs (class-balanced targets) to ``out`` batch by batch, then
    ``out/synthetic.npz`` (``x`` float32 in the normalised space, ``y``, ``mean``, ``std``) and ``out/synthesis.json``."""
    started, watch = origin(), Stopwatch()
    bn_layers(teacher)  # refused before any work
    out = Path(out)
    (out / "batches").mkdir(parents=True, exist_ok=True)
    n_batches = -(-num_images // batch_size)
    device = next(teacher.parameters()).device
    bar = tqdm(total=n_batches * settings.iterations, desc="synthesize", disable=None if show_progress else True,
               dynamic_ncols=True)
    first_last = []
    for b in range(n_batches):
        path = out / "batches" / f"batch{b:05d}.pt"
        if path.exists():  # done before a kill
            bar.update(settings.iterations)
            continue
        size = min(batch_size, num_images - b * batch_size)
        g = torch.Generator().manual_seed(seed * 100003 + b)
        targets = (torch.arange(b * batch_size, b * batch_size + size) % num_classes)[torch.randperm(size, generator=g)]
        x, history = invert_batch(teacher, targets.to(device), shape, settings, g, student, lambda: bar.update(1))
        tmp = path.with_suffix(".tmp")
        torch.save({"x": x.cpu(), "y": targets, "bn_first": history[0], "bn_last": history[-1]}, tmp)
        tmp.replace(path)
    bar.close()
    parts = [torch.load(out / "batches" / f"batch{b:05d}.pt", weights_only=True) for b in range(n_batches)]
    x = torch.cat([p["x"] for p in parts]).numpy().astype(np.float32)
    y = torch.cat([p["y"] for p in parts]).numpy().astype(np.int64)
    np.savez(out / DATASET_FILE, x=x, y=y, mean=mean.reshape(-1).numpy(), std=std.reshape(-1).numpy())
    first_last = [(p["bn_first"], p["bn_last"]) for p in parts]
    record = {"num_images": int(len(y)), "batch_size": batch_size, "settings": settings.__dict__, "seed": seed,
              "adaptive": student is not None and settings.competition_weight > 0,
              "bn_loss_first_mean": float(np.mean([a for a, _ in first_last])),
              "bn_loss_last_mean": float(np.mean([b for _, b in first_last])),
              "dataset": str(out / DATASET_FILE), **(info or {})}
    record["seconds_per_1000_images"] = watch.seconds() * 1000 / max(1, len(y))
    return write_result(out / "synthesis.json", record, watch.seconds(), started)


def synthetic_validation_size(n: int) -> int:
    """How many of ``n`` synthetic images validate (the last tenth, at least one); the rest train."""
    return max(1, n // 10)


def load_synthetic(path: str | Path, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels of a synthetic dataset, refused when it was made under another normalisation than
    the real data's (``mean``, ``std``): the real test split would not be what the teacher saw."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y, m, s = z["x"], z["y"], z["mean"], z["std"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"data.synthetic: {path} is not a dataset of nas-kd synthesize ({e})") from None
    if not (np.allclose(m, mean.reshape(-1).numpy(), atol=1e-4) and np.allclose(s, std.reshape(-1).numpy(), atol=1e-4)):
        raise UserError(f"data.synthetic: {path} was made under normalisation mean {m.tolist()} std {s.tolist()}, "
                        f"the recipe's data gives {mean.reshape(-1).tolist()} / {std.reshape(-1).tolist()}: "
                        "synthesize with the same data section")
    return torch.from_numpy(x), torch.from_numpy(y)
