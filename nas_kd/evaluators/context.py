"""What every evaluator shares: the search space (and the weight-sharing supernet, when there is one), the
teacher, a fixed probe set, shared BN-recalibration batches, the teacher's probe logits and stage features
(computed once), and a memo for the teacher-side work of each evaluator (:meth:`Evaluator.prepare`).
:meth:`EvalContext.build` is the one way the search, the rank-correlation study and the evaluator bench
make one, so all three score alike."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Callable, Hashable

import torch
import torch.nn as nn

from nas_kd.bn import recalibrate_bn
from nas_kd.data import BatchIterator, DataBundle, Split
from nas_kd.device import model_device, to_memory_format
from nas_kd.dna.score import load_tables
from nas_kd.errors import UserError
from nas_kd.evaluation import evaluate
from nas_kd.features import capture
from nas_kd.subnet import shape_text
from nas_kd.supernet import Supernet
from search_spaces import StagedSpace


@dataclass
class EvalContext:
    """Inputs shared by all archs scored against one teacher on one probe set."""

    space: StagedSpace
    supernet: Supernet | None  # None: no weight-sharing supernet (e.g. a blockwise one); only supernet-free evaluators
    teacher: nn.Module
    probe: torch.Tensor  # (n, C, H, W) probe images (the first n of the validation split)
    val: Split  # for the accuracy evaluator
    calibration: list[torch.Tensor]  # BN-recalibration batches, the same for every arch
    teacher_stages: list[str]  # teacher modules paired, in order, with the supernet's stages
    channels_last: bool = False
    eval_batch_size: int = 1000
    dna_tables: str | None = None  # a blockwise ranking (nas-kd dna-rank) for the dna evaluators
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, net: Supernet | StagedSpace, teacher: nn.Module, data: DataBundle, *, teacher_stages: list[str],
              probe_size: int, bn_batches: int, batch_size: int, seed: int, channels_last: bool,
              dna_tables: str | None = None) -> "EvalContext":
        """Probe = first ``probe_size`` validation images; calibration = ``bn_batches`` shuffled training batches.
        ``net``: a trained weight-sharing supernet, or just its space (supernet-free evaluators only)."""
        supernet, space = (net, net.space) if isinstance(net, Supernet) else (None, net)
        if probe_size < 3:
            raise UserError(f"probe_size must be >= 3 (RDMs need pairs), got {probe_size}")
        if (space.input_shape, space.num_classes) != (tuple(data.input_shape), data.num_classes):
            raise UserError(f"the supernet is built for {space.describe()}, the data has "
                            f"{shape_text(data.input_shape)} images and {data.num_classes} classes")
        calib = []
        for x, _ in BatchIterator(data.train, batch_size, shuffle=True, seed=seed).epoch(0):
            if len(calib) == bn_batches:
                break
            calib.append(x)
        check_teacher_stages(teacher, teacher_stages)
        return cls(space, supernet, teacher.eval(), data.val.x[:probe_size], data.val, calib,
                   list(teacher_stages[-len(space.stages):]), channels_last=channels_last, dna_tables=dna_tables)

    @property
    def device(self) -> torch.device:
        return model_device(self.supernet if self.supernet is not None else self.teacher)

    def require_stages(self, n: int, who: str, paired: bool) -> None:
        """Refuse, naming ``who``, a teacher with fewer than ``n`` stages (``paired``: one per supernet stage)."""
        require_stages(self.teacher_stages, n, who, paired)

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per context and ``key`` (teacher-side work evaluators share)."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]
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
    def dna_data(self) -> dict[str, Any]:
        """The blockwise ranking tables named by ``dna_tables``."""
        if not self.dna_tables:
            raise UserError("the dna evaluators need a blockwise ranking: set dna_tables (see nas-kd dna-rank)")
        return load_tables(self.dna_tables)


class RecalibratedSubnet:
    """A :class:`~nas_kd.evaluators.base.SubnetView` of one arch of the weight-sharing supernet, BN-recalibrated on
    the shared batches; its probe outputs are computed on first use."""

    def __init__(self, ctx: EvalContext, arch: dict[str, Any]) -> None:
        self.ctx, self.arch = ctx, ctx.space.validate(arch)
        net = ctx.supernet
        net.set_arch(self.arch)
        recalibrate_bn(net, [x.to(ctx.device) for x in ctx.calibration], len(ctx.calibration),
                       channels_last=ctx.channels_last)
        self.layers = ["stem", *net.stage_names]

    @cached_property
    def outputs(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Probe logits and the features of the stem and every stage."""
        return self.ctx.forward_features(self.ctx.supernet, self.layers)

    def paired(self, pairing: str) -> list[tuple[str, list[str]]]:
        """(teacher stage, candidate subnet layers) pairs: ``stage`` pairs stage i with stage i, ``best`` offers
        every subnet layer to each teacher stage."""
        if pairing == "stage":
            return [(t, [s]) for t, s in zip(self.ctx.teacher_stages, self.ctx.supernet.stage_names)]
        return [(t, self.layers) for t in self.ctx.teacher_stages]

    def val_accuracy(self) -> float:
        return evaluate(self.ctx.supernet, self.ctx.val, self.ctx.eval_batch_size, self.ctx.channels_last)["acc"]


class SpaceOnly:
    """A :class:`~nas_kd.evaluators.base.SubnetView` for evaluators that ignore the supernet's weights: no subnet
    is recalibrated and no outputs exist."""

    def __init__(self, ctx: EvalContext, arch: dict[str, Any]) -> None:
        self.ctx, self.arch = ctx, arch


def check_teacher_stages(teacher: nn.Module, teacher_stages: list[str]) -> None:
    """Refuse teacher stage names that are not modules of ``teacher`` (with close matches). How many are needed is
    said by what pairs them (:func:`require_stages`)."""
    modules = [n for n, _ in teacher.named_modules() if n]
    for name in teacher_stages:
        if name not in modules:
            close = difflib.get_close_matches(name, modules, n=3)
            raise UserError(f"teacher.stages: the teacher has no module {name!r}"
                            + (f" (close: {', '.join(close)})" if close else ""))


def require_stages(teacher_stages: list[str], n: int, who: str, paired: bool) -> None:
    """Refuse, naming the component ``who`` that pairs them, fewer than ``n`` teacher stages; a stage-paired
    evaluator is told that ``pairing: best`` takes a teacher of any depth."""
    if len(teacher_stages) >= n:
        return
    hint = " or give it pairing: best (any number of teacher stages)" if paired else ""
    raise UserError(f"teacher.stages: {who} compares {n} teacher stage(s) with the student's, and the teacher names "
                    f"{len(teacher_stages)} ({list(teacher_stages)}): name {n} teacher modules{hint}")
