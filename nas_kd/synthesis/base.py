"""What every data-free synthesis method shares: the registry, the task it is given, the batch loop of the methods
that optimise one batch of inputs at a time (resumable batch by batch), and the teacher priors they use (BatchNorm
statistics, total variation)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.errors import UserError
from nas_kd.registry import Registry


@dataclass
class Task:
    """What a method is asked for: ``num_images`` inputs of ``shape`` for the ``teacher`` (eval mode, on its
    device), in batches of ``batch_size`` written to ``batches`` as ``batchNNNNN.pt`` (``x``, ``y`` and what the
    method reports); ``student``: the method's student if it uses one; ``progress(n)``: n units done."""

    teacher: nn.Module
    num_classes: int
    shape: tuple[int, int, int]
    num_images: int
    batch_size: int
    seed: int
    batches: Path
    student: nn.Module | None
    progress: Callable[[int], None]

    @property
    def num_batches(self) -> int:
        return -(-self.num_images // self.batch_size)

    def size(self, b: int) -> int:
        return min(self.batch_size, self.num_images - b * self.batch_size)

    def batch_file(self, b: int) -> Path:
        return self.batches / f"batch{b:05d}.pt"

    def targets(self, b: int, generator: torch.Generator) -> torch.Tensor:
        """Batch ``b``'s class labels: class-balanced over the whole set, shuffled within the batch."""
        size = self.size(b)
        labels = torch.arange(b * self.batch_size, b * self.batch_size + size) % self.num_classes
        return labels[torch.randperm(size, generator=generator)]


def save_batch(path: Path, batch: dict[str, Any]) -> None:
    """A finished batch, published by one rename (a killed write leaves no batch file)."""
    from nas_kd.provenance import atomic_file

    with atomic_file(path) as tmp:
        torch.save(batch, tmp)


class Synthesizer:
    """A data-free synthesis method (registered in :data:`SYNTHESIZERS`, one file each). ``student``: what it does
    with a student (``None``: nothing; ``"optional"``: uses one when given; ``"required"``: trains one).
    :meth:`units` sizes the progress bar; :meth:`run` writes every missing batch file of the task."""

    student: ClassVar[str | None] = None
    needs_batchnorm: ClassVar[bool] = True

    def units(self, task: Task) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, task: Task) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def check(self, teacher: nn.Module, shape: tuple[int, int, int]) -> None:
        """Refuse, in one line before any work, a teacher the method cannot use for inputs of ``shape`` (default:
        nothing beyond its BatchNorm layers, checked by the caller when ``needs_batchnorm``)."""

    def settings(self) -> dict[str, Any]:
        """The options it was built with (its constructor's keywords; recorded with the dataset)."""
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


class BatchByBatch(Synthesizer):
    """A method that optimises each batch of inputs on its own (:meth:`make`), resumable batch by batch."""

    def run(self, task: Task) -> None:
        device = next(task.teacher.parameters()).device
        per_batch = self.units(task) // task.num_batches
        for b in range(task.num_batches):
            path = task.batch_file(b)
            if path.exists():  # done before a kill
                task.progress(per_batch)
                continue
            g = torch.Generator().manual_seed(task.seed * 100003 + b)
            targets = task.targets(b, g)
            x, info = self.make(task, targets.to(device), g)
            save_batch(path, {"x": x.cpu(), "y": targets, **info})

    def make(self, task: Task, targets: torch.Tensor, generator: torch.Generator
             ) -> tuple[torch.Tensor, dict[str, Any]]:  # pragma: no cover - abstract
        raise NotImplementedError


SYNTHESIZERS: Registry[Synthesizer] = Registry("synthesis method")


def bn_layers(teacher: nn.Module) -> list[nn.BatchNorm2d]:
    """The teacher's BatchNorm layers; none: a one-line error naming the fix."""
    found = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
    if not found:
        raise UserError("nas-kd synthesize: the teacher has no BatchNorm layers with running statistics, which the "
                        "method matches; give a teacher with BatchNorm, use --method impressions (it needs none), "
                        "or train the student on real images")
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
