"""What every evaluator shares: the supernet, the teacher, a fixed probe set, shared BN-recalibration
batches, and the teacher's logits, stage features, RDMs and Gram matrices (computed once)."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
import torch.nn as nn

from nas_kd.bn import recalibrate_bn
from nas_kd.data import BatchIterator, DataBundle, Split
from nas_kd.device import model_device, to_memory_format
from nas_kd.errors import UserError
from nas_kd.evaluation import evaluate
from nas_kd.evaluators.similarity import centred_gram, rdm
from nas_kd.features import capture
from nas_kd.subnet import shape_text
from nas_kd.supernet import Supernet


@dataclass
class EvalContext:
    """Inputs shared by all archs scored against one teacher on one probe set."""

    supernet: Supernet
    teacher: nn.Module
    probe: torch.Tensor  # (n, C, H, W) probe images (the first n of the validation split)
    val: Split  # for the accuracy evaluator
    calibration: list[torch.Tensor]  # BN-recalibration batches, the same for every arch
    teacher_stages: list[str]  # teacher modules paired, in order, with the supernet's stages
    channels_last: bool = False
    eval_batch_size: int = 1000
    rdm_method: str = "spearman"
    rdm_proj_dim: int | None = None  # random projection of wider layers to this size (None: never)
    pairing: str = "stage"  # stage: teacher stage i vs subnet stage i; best: best-matching subnet layer
    dna_tables: str | None = None  # a blockwise ranking (nas-kd dna-rank) for the dna evaluators
    free_batch: int = 32  # probe images the training-free evaluators look at
    _teacher: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, supernet: Supernet, teacher: nn.Module, data: DataBundle, *, teacher_stages: list[str],
              probe_size: int = 500, bn_batches: int = 20, batch_size: int = 128, seed: int = 0,
              **options: Any) -> "EvalContext":
        """Probe = first ``probe_size`` validation images; calibration = ``bn_batches`` shuffled training batches."""
        if probe_size < 3:
            raise UserError(f"probe_size must be >= 3 (RDMs need pairs), got {probe_size}")
        if (supernet.space.input_shape, supernet.space.num_classes) != (tuple(data.input_shape), data.num_classes):
            raise UserError(f"the supernet is built for {supernet.space.describe()}, the data has "
                            f"{shape_text(data.input_shape)} images and {data.num_classes} classes")
        calib = []
        for x, _ in BatchIterator(data.train, batch_size, shuffle=True, seed=seed).epoch(0):
            if len(calib) == bn_batches:
                break
            calib.append(x)
        n_stages = len(supernet.stage_names)
        modules = [n for n, _ in teacher.named_modules() if n]
        for name in teacher_stages:  # before any scoring starts
            if name not in modules:
                close = difflib.get_close_matches(name, modules, n=3)
                raise UserError(f"teacher.stages: the teacher has no module {name!r}"
                                + (f" (close: {', '.join(close)})" if close else ""))
        if len(teacher_stages) < n_stages:
            raise UserError(f"the teacher names {len(teacher_stages)} stages ({teacher_stages}); "
                             f"the supernet has {n_stages}: name at least as many teacher stages")
        return cls(supernet, teacher.eval(), data.val.x[:probe_size], data.val, calib,
                   list(teacher_stages[-n_stages:]), **options)

    @property
    def device(self) -> torch.device:
        return model_device(self.supernet)

    def forward_features(self, model: nn.Module, names: list[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and named features of ``model`` on the probe set (batched, no grad, eval mode)."""
        model.eval()
        logits, feats = [], {n: [] for n in names}
        with torch.no_grad(), capture(model, names) as cap:
            for i in range(0, len(self.probe), self.eval_batch_size):
                x = to_memory_format(self.probe[i : i + self.eval_batch_size].to(self.device), self.channels_last)
                logits.append(model(x).float().cpu())
                for n in names:
                    feats[n].append(cap[n].float().cpu())
        return torch.cat(logits), {n: torch.cat(v) for n, v in feats.items()}

    @cached_property
    def teacher_logits(self) -> torch.Tensor:
        """The teacher's probe logits (computed once; any teacher, TorchScript too)."""
        return self.forward_features(self.teacher, [])[0]

    @cached_property
    def teacher_outputs(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The teacher's probe logits and stage features (computed once)."""
        if isinstance(self.teacher, torch.jit.ScriptModule):
            raise UserError("the teacher is a TorchScript model, whose stage features cannot be captured: use the "
                            "evaluators that read logits only (kl, accuracy, flops, params, naswot, synflow) or give "
                            "the teacher as model + checkpoint")
        return self.forward_features(self.teacher, self.teacher_stages)

    @cached_property
    def teacher_semantics(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """On the first ``free_batch`` probe images: the teacher's Grad-CAM maps of its predicted classes at
        its last stage, its pooled last-stage features, and those classes (for ``diswot``)."""
        from nas_kd.evaluators.training_free import cam_at

        self.teacher_outputs  # noqa: B018  (refuses a TorchScript teacher, whose stages cannot be hooked)
        x = self.probe[: self.free_batch].to(self.device)
        last = self.teacher_stages[-1]
        with torch.no_grad():
            classes = self.teacher(x).argmax(1)
        return (*cam_at(self.teacher, last, x, classes), classes)

    @cached_property
    def dna_data(self) -> dict[str, Any]:
        """The blockwise ranking tables named by ``dna_tables``."""
        if not self.dna_tables:
            raise UserError("the dna evaluators need a blockwise ranking: set dna_tables (see nas-kd dna-rank)")
        from nas_kd.dna.ranking import load_tables

        return load_tables(self.dna_tables)

    @cached_property
    def teacher_rdms(self) -> dict[str, torch.Tensor]:
        return {n: rdm(f, self.rdm_proj_dim) for n, f in self.teacher_outputs[1].items()}

    @cached_property
    def teacher_grams(self) -> dict[str, torch.Tensor]:
        return {n: centred_gram(f) for n, f in self.teacher_outputs[1].items()}


class SubnetView:
    """One arch of the supernet, BN-recalibrated on the shared batches; outputs computed on first use."""

    def __init__(self, ctx: EvalContext, arch: dict[str, Any]) -> None:
        self.ctx, self.arch = ctx, ctx.supernet.space.validate(arch)
        net = ctx.supernet
        net.set_arch(self.arch)
        recalibrate_bn(net, [x.to(ctx.device) for x in ctx.calibration], len(ctx.calibration),
                       channels_last=ctx.channels_last)
        self.layers = ["stem", *net.stage_names]

    @cached_property
    def outputs(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Probe logits and the features of the stem and every stage."""
        return self.ctx.forward_features(self.ctx.supernet, self.layers)

    def paired(self) -> list[tuple[str, list[str]]]:
        """(teacher stage, candidate subnet layers) pairs under the context's pairing rule."""
        stages = self.ctx.supernet.stage_names
        if self.ctx.pairing == "stage":
            return [(t, [s]) for t, s in zip(self.ctx.teacher_stages, stages)]
        if self.ctx.pairing == "best":
            return [(t, self.layers) for t in self.ctx.teacher_stages]
        raise UserError(f"pairing {self.ctx.pairing!r} is not one of: stage, best")

    def val_accuracy(self) -> float:
        return evaluate(self.ctx.supernet, self.ctx.val, self.ctx.eval_batch_size, self.ctx.channels_last)["acc"]


EVALUATOR_OPTIONS = ("rdm_method", "rdm_proj_dim", "pairing", "free_batch")  # what a recipe may set


def check_evaluator_options(options: dict[str, Any]) -> None:
    """Refuse options that are not :data:`EVALUATOR_OPTIONS` or have values the evaluators do not know."""
    for key, value in options.items():
        if key not in EVALUATOR_OPTIONS:
            close = difflib.get_close_matches(str(key), EVALUATOR_OPTIONS, n=1)
            raise UserError(f"search.evaluator_options: unknown option {key!r}"
                            + (f" (did you mean {close[0]!r}?)" if close else "")
                            + f"; options: {', '.join(EVALUATOR_OPTIONS)}")
    if options.get("rdm_method", "spearman") not in ("spearman", "pearson"):
        raise UserError(f"search.evaluator_options.rdm_method: {options['rdm_method']!r} is not spearman or pearson")
    if options.get("pairing", "stage") not in ("stage", "best"):
        raise UserError(f"search.evaluator_options.pairing: {options['pairing']!r} is not stage or best")
    for key in ("rdm_proj_dim", "free_batch"):
        v = options.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 2):
            raise UserError(f"search.evaluator_options.{key}: must be an integer >= 2, got {v!r}")
