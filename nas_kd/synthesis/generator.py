"""``generator``: a generator trained adversarially against a student, from the teacher alone (DFAD, Fang et al.,
"Data-Free Adversarial Distillation", 2019; ZSKT, Micaelli & Storkey, NeurIPS 2019), with DAFL's class terms (Chen et
al., "Data-Free Learning of Student Networks", ICCV 2019) and DeepInversion's BatchNorm-statistics prior."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.checkpoint import load_checkpoint, save_checkpoint
from nas_kd.synthesis.base import SYNTHESIZERS, BNStatistics, Synthesizer, Task, bn_layers, save_batch
from nas_kd.typecheck import AtLeast1, NonNegative, Positive

STATE_FILE = "generator_state.pt"


class Generator(nn.Module):
    """DCGAN-style: a noise vector -> a linear map to 2 x ``width`` maps of a quarter of the input size -> two
    (upsample x2, 3x3 conv, BatchNorm, LeakyReLU) blocks (2 x ``width``, then ``width`` channels) -> a 3x3 conv to the
    input's channels -> BatchNorm without affine parameters (the inputs live in the data's normalised space: zero
    mean, unit variance per channel), resized to the input's size when it is not a multiple of 4. DFAD's CIFAR
    generator is ``width`` 64."""

    def __init__(self, z_dim: int, shape: tuple[int, int, int], width: int = 64) -> None:
        super().__init__()
        c, h, w = shape
        self.shape, self.h0, self.w0, self.wide = shape, math.ceil(h / 4), math.ceil(w / 4), 2 * width
        self.project = nn.Linear(z_dim, self.wide * self.h0 * self.w0)
        self.body = nn.Sequential(
            nn.BatchNorm2d(self.wide), nn.Upsample(scale_factor=2),
            nn.Conv2d(self.wide, self.wide, 3, padding=1, bias=False), nn.BatchNorm2d(self.wide), nn.LeakyReLU(0.2),
            nn.Upsample(scale_factor=2), nn.Conv2d(self.wide, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2), nn.Conv2d(width, c, 3, padding=1), nn.BatchNorm2d(c, affine=False))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.body(self.project(z).view(len(z), self.wide, self.h0, self.w0))
        return x if tuple(x.shape[-2:]) == self.shape[1:] else F.interpolate(x, size=self.shape[1:], mode="bilinear")


def class_terms(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DAFL's terms on the teacher's logits of a generated batch: the one-hot loss (cross-entropy against its own
    arg-max: each image should look like one class) and the entropy of the batch's mean prediction (high: the
    classes are balanced)."""
    one_hot = F.cross_entropy(logits, logits.argmax(1))
    mean = torch.softmax(logits, 1).mean(0)
    return one_hot, -(mean * mean.clamp_min(1e-12).log()).sum()


@SYNTHESIZERS.register("generator", example={"steps": 2, "student_steps": 1, "checkpoint_every": 1})
class AdversarialGenerator(Synthesizer):
    r"""A generator and the student are trained against each other, from the teacher alone: at each of ``steps``
    steps the student takes ``student_steps`` steps (SGD) towards the teacher's logits on fresh generated images
    (mean absolute error of the logits, DFAD's), then the generator takes one step (Adam) on
    :math:`-\text{adversarial\_weight}\,\mathrm{MAE}(s, t) + \text{bn\_weight}\,\mathrm{BN} +
    \text{oh\_weight}\,\mathrm{CE}(t, \arg\max t) - \text{balance\_weight}\,H(\bar p_t)`: images where the student
    still disagrees with the teacher, whose statistics the teacher's BatchNorm layers recognise, each of one class,
    the classes balanced. The teacher is never trained. Both learning rates follow a cosine schedule.

    The dataset written is a replay of the training: its batches are sampled from the generator at evenly spaced
    steps (the last at the final step), labelled by the teacher's arg-max, so a student trained on it later sees
    the curriculum of hard images the adversary found (a named simplification: DFAD's student learns only online,
    and CMI keeps a memory bank the same way). The co-trained student's weights are kept in ``generator_state.pt``.
    Resumable: the state is checkpointed every ``checkpoint_every`` steps, and each step's noise comes from a
    generator seeded by the step, so a resumed run repeats what a straight one does. Defaults: DFAD's (5 student
    steps per generator step, lr 0.1 / 1e-3, 100-d noise) with DAFL's weights (one-hot 1, balance 5), and a generator
    of half DFAD's CIFAR width (``width`` 32: at 64 it costs more per image than the 52-MFLOP reference teacher; on 2
    CPU cores a step with 5 student steps and batch 128 took about 7 s at width 64).
    """

    student = "required"

    def __init__(self, *, steps: AtLeast1 = 2000, student_steps: AtLeast1 = 5, batch_size: AtLeast1 = 128,
                 z_dim: AtLeast1 = 100, width: AtLeast1 = 32, lr_generator: Positive = 1e-3, lr_student: Positive = 0.1,
                 adversarial_weight: NonNegative = 1.0, bn_weight: NonNegative = 1.0, oh_weight: NonNegative = 1.0,
                 balance_weight: NonNegative = 5.0, checkpoint_every: AtLeast1 = 50) -> None:
        self.steps, self.student_steps, self.batch_size, self.z_dim = int(steps), int(student_steps), int(batch_size), int(z_dim)
        self.width = int(width)
        self.lr_generator, self.lr_student = float(lr_generator), float(lr_student)
        self.adversarial_weight, self.bn_weight = float(adversarial_weight), float(bn_weight)
        self.oh_weight, self.balance_weight, self.checkpoint_every = float(oh_weight), float(balance_weight), int(checkpoint_every)

    def units(self, task: Task) -> int:
        return self.steps

    def kept_at(self, task: Task) -> dict[int, int]:
        """{step: batch} of the dataset's batches: evenly spaced over training, the last at the final step."""
        return {round((b + 1) * self.steps / task.num_batches) - 1: b for b in range(task.num_batches)}

    def run(self, task: Task) -> None:
        teacher, student = task.teacher.eval(), task.student
        device = next(teacher.parameters()).device
        torch.manual_seed(task.seed)
        gen = Generator(self.z_dim, task.shape, self.width).to(device)
        student = student.to(device).train()
        opt_g = torch.optim.Adam(gen.parameters(), lr=self.lr_generator, betas=(0.5, 0.999))
        opt_s = torch.optim.SGD(student.parameters(), lr=self.lr_student, momentum=0.9, weight_decay=5e-4)
        sched = [torch.optim.lr_scheduler.CosineAnnealingLR(o, self.steps) for o in (opt_g, opt_s)]
        state_path: Path = task.batches.parent / STATE_FILE
        start = 0
        if state_path.exists():
            state = load_checkpoint(state_path)
            for module, key in ((gen, "generator"), (student, "student"), (opt_g, "opt_generator"),
                                (opt_s, "opt_student"), (sched[0], "sched_generator"), (sched[1], "sched_student")):
                module.load_state_dict(state[key])
            start = state["step"]
            task.progress(start)
        kept = self.kept_at(task)
        frozen = [(p, p.requires_grad) for p in teacher.parameters()]
        for p, _ in frozen:
            p.requires_grad_(False)
        hooks = BNStatistics(bn_layers(teacher)) if self.bn_weight > 0 else None
        try:
            for step in range(start, self.steps):
                g = torch.Generator().manual_seed(task.seed * 1_000_003 + step)
                noise = lambda n: torch.randn(n, self.z_dim, generator=g).to(device)  # noqa: E731
                for _ in range(self.student_steps):
                    with torch.no_grad():
                        x = gen(noise(self.batch_size))
                        t = teacher(x)
                    if hooks is not None:
                        hooks.pop()
                    opt_s.zero_grad(set_to_none=True)
                    F.l1_loss(student(x), t).backward()
                    opt_s.step()
                x = gen(noise(self.batch_size))
                t = teacher(x)
                one_hot, balance = class_terms(t)
                loss = self.oh_weight * one_hot - self.balance_weight * balance
                if hooks is not None:
                    loss = loss + self.bn_weight * hooks.pop()
                loss = loss - self.adversarial_weight * F.l1_loss(student(x), t)
                opt_g.zero_grad(set_to_none=True)
                loss.backward()
                opt_g.step()
                for s in sched:
                    s.step()
                if step in kept and not task.batch_file(kept[step]).exists():
                    self.keep(task, kept[step], gen, teacher, g, device, hooks)
                task.progress(1)
                if (step + 1) % self.checkpoint_every == 0 or step + 1 == self.steps:
                    save_checkpoint({"generator": gen.state_dict(), "student": student.state_dict(),
                                     "opt_generator": opt_g.state_dict(), "opt_student": opt_s.state_dict(),
                                     "sched_generator": sched[0].state_dict(), "sched_student": sched[1].state_dict(),
                                     "step": step + 1}, state_path)
        finally:
            if hooks is not None:
                hooks.close()
            for p, flag in frozen:
                p.requires_grad_(flag)

    def keep(self, task: Task, b: int, gen: Generator, teacher: nn.Module, g: torch.Generator, device: Any,
             hooks: BNStatistics | None) -> None:
        """Batch ``b`` of the dataset: a fresh sample of the generator now, labelled by the teacher."""
        with torch.no_grad():
            x = gen(torch.randn(task.size(b), self.z_dim, generator=g).to(device))
            t = teacher(x)
        if hooks is not None:
            hooks.pop()
        save_batch(task.batch_file(b), {"x": x.cpu(), "y": t.argmax(1).cpu(),
                                        "teacher_confidence": torch.softmax(t, 1).max(1).values.mean().item()})
