"""Weight-sharing supernet training: what every weight-sharing ``supernet.mode`` shares (:class:`WeightSharing`,
with its step kit :class:`Kit`), and the sandwich rule with in-place distillation (BigNAS / OFA / AlphaNet style).

``sandwich``: each step trains the max subnet, the min subnet and ``num_random`` random subnets (drawn by
the recipe's sampler, seeded by (seed, epoch, step), so a resumed run and every torchrun rank
draw the same ones) on the same batch, accumulating gradients, then takes one optimiser step. The max subnet learns
from the hard labels (plus, optionally, the fixed teacher); the others learn from soft
labels: the max subnet's detached logits (``inplace``), the fixed teacher's (``teacher``),
or a weighted mix of both (``mix``), through the recipe's ``supernet.distill`` terms (logit methods of
:mod:`nas_kd.distill`, e.g. ``[{name: alpha_div}]``); ``none`` trains every subnet on the hard labels.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

import search_spaces
from nas_kd.bn import recalibrate_bn
from nas_kd.config import SupernetConfig
from nas_kd.data import calibration_batches, step_seed
from nas_kd.device import autocast
from nas_kd.distill import Term, View, build_distiller, parse_terms
from nas_kd.errors import UserError
from nas_kd.evaluation import evaluate
from nas_kd.losses.functional import kd_loss
from nas_kd.supernet import Supernet
from nas_kd.job import Job
from nas_kd.train import distributed as dist
from nas_kd.train.loop import TrainLoop
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer, mode_name
from nas_kd.train.setup import build_loop, start_run
from nas_kd.typecheck import Index, NonNegative, Probability
from search_spaces import SAMPLERS, StagedSpace


def eval_archs(space, n_random: int, seed: int) -> dict[str, dict]:
    """The archs evaluated every epoch: max, min and ``n_random`` fixed random ones."""
    rng = random.Random(seed)
    return {"max": space.max_arch(), "min": space.min_arch(), **{f"rand{i}": space.sample(rng) for i in range(n_random)}}


def median_flops_arch(space, seed: int, n: int = 201) -> dict:
    """The arch of median FLOPs among ``n`` uniform samples (a fixed 'typical' subnet for reports)."""
    rng = random.Random(seed)
    archs = sorted((space.sample(rng) for _ in range(n)), key=space.flops)
    return archs[n // 2]


def subnet_accuracy(net: Supernet, arch: dict, job: Job, split: str, bn_batches: int) -> float:
    """Top-1 accuracy of ``arch`` on the job's ``split`` after BatchNorm recalibration on ``bn_batches`` training
    batches."""
    cl, data = job.train.channels_last, job.data
    net.set_arch(arch)
    recalibrate_bn(net, calibration_batches(data, job.batching.batch_size, job.seed).epoch(0), bn_batches, channels_last=cl)
    return evaluate(net, getattr(data, split), job.batching.eval_batch_size, cl)["acc"]


@dataclass
class Kit:
    """What a weight-sharing method's step works with: the job, the method itself (its options), the supernet and its
    space, the sampler, the fixed teacher (None when no soft label needs it), the method's distillers, and the loop
    (its position seeds the step)."""

    job: Job
    mode: "WeightSharing"
    space: StagedSpace
    net: Supernet
    sampler: Any
    teacher: nn.Module | None
    distillers: list
    device: torch.device
    loop: TrainLoop | None = None

    def rng(self) -> random.Random:
        """The step's generator, seeded by (seed, epoch, step): a resumed run draws what the straight one drew."""
        return random.Random(step_seed(self.job.seed, self.loop.state.epoch, self.loop.state.step))

    def forward(self, arch: dict, x: torch.Tensor) -> torch.Tensor:
        """Logits of the subnet ``arch`` (float32)."""
        self.net.set_arch(arch)
        with autocast(self.device, self.job.train.amp):
            return self.net(x).float()

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        with torch.no_grad(), autocast(self.device, self.job.train.amp):
            return self.teacher(x).float()

    def hard_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, y, label_smoothing=self.job.train.label_smoothing)

    def distill(self, out: torch.Tensor, y: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        """The method's ``distill`` terms with ``soft`` as the teacher's logits."""
        view = View(y, out, {}, [soft])
        return sum(t.weight * v for t, d in zip(self.mode.terms, self.distillers) for v in d(view).values())

    def soft_loss(self, out: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor | None,
                  inplace: torch.Tensor | None) -> torch.Tensor:
        """A non-max subnet's loss by the method's ``soft_labels``: from ``inplace`` (the max subnet's detached
        logits), the fixed teacher's ``t_logits``, a mix of both, or (``none``) the hard labels."""
        mode, mix = self.mode.soft_labels, self.mode.mix_weight
        if mode == "none":
            return self.hard_loss(out, y)
        if mode == "inplace":
            return self.distill(out, y, inplace)
        if mode == "teacher":
            return self.distill(out, y, t_logits)
        return mix * self.distill(out, y, t_logits) + (1 - mix) * self.distill(out, y, inplace)


@dataclass(kw_only=True)
class WeightSharing(SupernetTrainer):
    """A weight-sharing supernet method: the setup, validation and final report every such method shares. A
    subclass defines :meth:`step` (it calls ``backward``) and, when it keeps state across steps, :meth:`begin`,
    :meth:`state_dict` and :meth:`load_state_dict` (saved in every checkpoint, so a resume is exact).

    Options every such method has: ``distill``, the logit terms that teach a subnet (methods of
    :mod:`nas_kd.distill`, e.g. ``[{name: alpha_div}]``); ``soft_labels``, whose logits they read (``inplace``: the
    max subnet's, ``teacher``: the fixed teacher's, ``mix``: both, weighted ``mix_weight`` for the teacher, ``none``:
    hard labels only); ``sampler``, how random subnets are drawn (``uniform`` or ``flops``)."""

    weight_sharing = True
    distill: list[dict] = field(default_factory=lambda: [{"name": "alpha_div"}])
    soft_labels: Literal["inplace", "teacher", "mix", "none"] = "inplace"
    mix_weight: Probability = 0.5
    sampler: str = "uniform"

    def __post_init__(self) -> None:
        self.terms: list[Term] = parse_terms(self.distill, "distill", logits_only=True)
        if not self.terms and self.soft_labels != "none":
            raise UserError(f"distill is empty but soft_labels is {self.soft_labels!r}: give a term "
                            "(e.g. [{name: alpha_div}]) or set soft_labels: none")
        SAMPLERS.check_options(self.sampler, {}, "sampler", given=("space",))

    def needs_teacher(self) -> bool:
        """Whether a step reads the fixed teacher's logits."""
        return self.soft_labels in ("teacher", "mix")

    def begin(self, kit: Kit) -> None:
        """Fresh per-run state, before a checkpoint may restore it. Default: none."""

    def step(self, kit: Kit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def report(self, kit: Kit) -> dict[str, Any]:
        """The method's own entries of ``final.json``. Default: none."""
        return {}

    def train(self, job: Job, cfg: SupernetConfig, *, resume: bool = False,
              on_step: Callable[[TrainLoop], None] | None = None, show_progress: bool = True) -> dict[str, Any]:
        """Train the supernet of ``cfg.space`` on the job; returns the final metrics (test accuracy of the max,
        min and median-FLOPs subnets after BN recalibration)."""
        distillers = [build_distiller(t) for t in self.terms]
        for d in distillers:
            d.resolve(None, [[]], 1)  # one soft-label source plays the teacher
        started, run, device = start_run(job, resume)
        data = job.data
        teacher = job.teacher.module() if self.needs_teacher() else None
        space = search_spaces.get(cfg.space, data.input_shape, data.num_classes)
        net = space.build_supernet(kernel_transform=cfg.kernel_transform)
        kit = Kit(job, self, space, net, SAMPLERS.build(self.sampler, space=space),
                  teacher.to(device) if teacher is not None else None, distillers, device)
        self.begin(kit)
        kit.loop = build_loop(job, run, net, device, on_step=on_step, show_progress=show_progress,
                              meta={"supernet": net.meta()}, keep_epoch_checkpoints=cfg.keep_epoch_checkpoints,
                              extra_state=self.state_dict, load_extra_state=self.load_state_dict)
        watched = eval_archs(space, cfg.eval_random_archs, job.seed)

        def accuracy(arch: dict, split: str) -> float:
            return subnet_accuracy(net, arch, job, split, cfg.bn_batches)

        def validate(epoch: int) -> dict[str, float]:
            out = {f"val_acc_{name}": accuracy(arch, "val") for name, arch in watched.items()}
            net.train()
            return out

        kit.loop.fit(lambda x, y: self.step(kit, x, y), validate)
        median = median_flops_arch(space, job.seed)
        final = {
            "mode": mode_name(self), "space": cfg.space, "dataset": data.name,
            "epochs": job.train.epochs, "seed": job.seed,
            "recipe": job.run.config, "accuracy_kind": "last epoch, after BN recalibration",
            "device": str(device), "world_size": dist.world_size(),
            "max_acc": accuracy(space.max_arch(), "test"), "min_acc": accuracy(space.min_arch(), "test"),
            "median_acc": accuracy(median, "test"),
            "max_mflops": space.flops(space.max_arch()) / 1e6, "min_mflops": space.flops(space.min_arch()) / 1e6,
            "median_mflops": space.flops(median) / 1e6, "median_arch": median,
            "checkpoint": str(run.last_checkpoint), **self.report(kit),
        }
        return kit.loop.finish(final, started)


@SUPERNET_TRAINERS.register("sandwich")
@dataclass(kw_only=True)
class Sandwich(WeightSharing):
    """The sandwich rule (Yu et al., BigNAS, ECCV 2020; AlphaNet's alpha-divergence, Wang et al., ICML 2021, as a
    ``distill`` term): per step the max subnet on the hard labels (plus ``max_teacher_weight`` x KD from the fixed
    teacher), then the min subnet and ``num_random`` sampled subnets on soft labels (``soft_labels``)."""

    num_random: Index = 2
    max_teacher_weight: NonNegative = 0.0

    def needs_teacher(self) -> bool:
        return super().needs_teacher() or self.max_teacher_weight > 0

    def max_loss(self, kit: Kit, logits: torch.Tensor, y: torch.Tensor, t_logits: torch.Tensor | None) -> torch.Tensor:
        """The largest subnet's loss: hard labels, plus ``max_teacher_weight`` x KD from the fixed teacher."""
        loss = kit.hard_loss(logits, y)
        if self.max_teacher_weight > 0:
            loss = loss + self.max_teacher_weight * kd_loss(logits, t_logits, 1.0)
        return loss

    def others(self, kit: Kit, rng: random.Random) -> list[dict]:
        """The subnets trained on soft labels this step."""
        return [kit.space.min_arch()] + kit.sampler.sample(rng, self.num_random)

    def step(self, kit: Kit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        rng = kit.rng()
        t_logits = kit.teacher_logits(x)
        logits = kit.forward(kit.space.max_arch(), x)
        loss = self.max_loss(kit, logits, y, t_logits)
        loss.backward()
        soft = logits.detach()
        stats = {"loss_max": loss.item() * len(y), "acc": (logits.argmax(1) == y).sum().item(), "count": len(y)}
        others = self.others(kit, rng)
        total = 0.0
        for arch in others:
            sub_loss = kit.soft_loss(kit.forward(arch, x), y, t_logits, soft)
            sub_loss.backward()
            total += sub_loss.item()
        stats["loss_distill"] = total / max(1, len(others)) * len(y)
        return stats
