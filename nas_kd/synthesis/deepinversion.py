"""``deepinversion``: DeepInversion and Adaptive DeepInversion (Yin et al., "Dreaming to Distill: Data-free
Knowledge Transfer via DeepInversion", CVPR 2020)."""
from __future__ import annotations

import math
from typing import Any, Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.synthesis.base import SYNTHESIZERS, BatchByBatch, BNStatistics, Task, bn_layers, js_divergence, total_variation
from nas_kd.errors import UserError
from nas_kd.typecheck import AtLeast1, Index, NonNegative, Positive, Probability


@SYNTHESIZERS.register("deepinversion", example={"iterations": 2})
class DeepInversion(BatchByBatch):
    """A batch of inputs, started from noise, is optimised (Adam, betas 0.5 / 0.9) so that

    * the teacher classifies each input as its target class (class-balanced targets): cross-entropy;
    * every BatchNorm layer of the teacher sees, on the batch, the mean and variance it stored in training:
      ``bn_weight`` x sum over layers of ||mu_batch - running_mean||_2 + ||var_batch - running_var||_2;
    * natural-image priors keep the inputs smooth and bounded: ``tv_weight`` x the total variation and
      ``l2_weight`` x the mean squared input;
    * with a student (Adaptive DeepInversion), ``competition_weight`` x (1 - JS(teacher || student)): the inputs
      also seek where the student disagrees with the teacher (the student is not trained).

    Each step sees the batch randomly shifted by up to ``jitter`` pixels (the paper's jitter). Defaults: the paper's
    CIFAR-10 settings (2,000 iterations at lr 0.1, constant), the priors scaled to these inputs.

    The authors' ImageNet schedule is two options: ``low_res`` (the share of the iterations in the multi-resolution
    warm-up, 2/3 there: the teacher sees the batch 2x2 average-pooled, with half the jitter, so the coarse layout
    forms first; then it sees full resolution) and ``schedule: cosine`` (each phase restarts Adam and follows the
    authors' cosine learning rate with a linear warm-up of 100 iterations, at most a quarter of the phase). The
    warm-up needs a teacher that takes half-resolution inputs (global pooling before its classifier): checked
    before any work.
    """

    student = "optional"

    def __init__(self, *, iterations: AtLeast1 = 2000, lr: Positive = 0.1, bn_weight: NonNegative = 1.0,
                 tv_weight: NonNegative = 1e-4, l2_weight: NonNegative = 1e-5, competition_weight: NonNegative = 1.0,
                 jitter: Index = 2, low_res: Probability = 0.0,
                 schedule: Literal["constant", "cosine"] = "constant") -> None:
        self.iterations, self.lr, self.bn_weight, self.tv_weight = int(iterations), float(lr), float(bn_weight), float(tv_weight)
        self.l2_weight, self.competition_weight, self.jitter = float(l2_weight), float(competition_weight), int(jitter)
        self.low_res, self.schedule = float(low_res), schedule

    def phases(self) -> list[tuple[int, int]]:
        """(pooling factor, iterations) of each resolution phase: the warm-up at half resolution, then full."""
        coarse = round(self.low_res * self.iterations)
        return [(f, n) for f, n in ((2, coarse), (1, self.iterations - coarse)) if n > 0]

    def check(self, teacher: nn.Module, shape: tuple[int, int, int]) -> None:
        if self.low_res > 0:
            half = (shape[0], shape[1] // 2, shape[2] // 2)
            try:
                with torch.no_grad():
                    teacher.eval()(torch.zeros(2, *half, device=next(teacher.parameters()).device))
            except RuntimeError as e:
                raise UserError(f"deepinversion low_res {self.low_res:g}: the teacher does not take half-resolution "
                                f"inputs {half} ({str(e).splitlines()[0]}); use low_res: 0") from None

    def lr_at(self, i: int, n: int) -> float:
        """The learning rate at iteration ``i`` of a phase of ``n`` (the authors' cosine policy when ``cosine``)."""
        if self.schedule == "constant":
            return self.lr
        warm = min(100, n // 4)
        if i < warm:
            return self.lr * (i + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, n - warm))) * self.lr

    def units(self, task: Task) -> int:
        return task.num_batches * self.iterations

    def make(self, task: Task, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
        x, history = self.invert(task.teacher, targets, task.shape, generator, task.student, lambda: task.progress(1))
        return x, {"bn_loss_first": history[0], "bn_loss_last": history[-1]}

    def invert(self, teacher: nn.Module, targets: torch.Tensor, shape: tuple[int, int, int], generator: torch.Generator,
               student: nn.Module | None = None, on_iteration: Callable[[], None] | None = None
               ) -> tuple[torch.Tensor, list[float]]:
        """One batch of inputs for ``targets``; returns them and the BatchNorm-statistics loss at every iteration."""
        teacher.eval()
        x = torch.randn((len(targets), *shape), generator=generator).to(targets.device).requires_grad_(True)
        hooks = BNStatistics(bn_layers(teacher))
        compete = student is not None and self.competition_weight > 0
        frozen = [(p, p.requires_grad) for p in (student.parameters() if compete else [])]
        for p, _ in frozen:  # the competition term moves the inputs, never the student
            p.requires_grad_(False)
        history = []
        try:
            for pool, n in self.phases():
                opt = torch.optim.Adam([x], lr=self.lr, betas=(0.5, 0.9))  # each phase restarts Adam
                jitter = self.jitter // pool
                for i in range(n):
                    for group in opt.param_groups:
                        group["lr"] = self.lr_at(i, n)
                    dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
                    shifted = torch.roll(x, shifts=(dx, dy), dims=(2, 3))
                    seen = F.avg_pool2d(shifted, pool) if pool > 1 else shifted
                    opt.zero_grad(set_to_none=True)
                    logits = teacher(seen)
                    bn = hooks.pop()
                    loss = (F.cross_entropy(logits, targets) + self.bn_weight * bn
                            + self.tv_weight * total_variation(shifted) + self.l2_weight * shifted.pow(2).mean())
                    if compete:
                        loss = loss + self.competition_weight * (1 - js_divergence(logits, student.eval()(seen)))
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
