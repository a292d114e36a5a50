"""``kd-proxy``: the reward of AKD (Liu et al., "Search to Distill: Pearls are Everywhere but not the Eyes",
CVPR 2020): how well a candidate learns from *this* teacher, measured by a short distillation.

The subnet is exported with its inherited (BN-recalibrated) weights, trained for ``steps`` SGD steps
(``lr``, momentum 0.9) on the KD loss alone (Hinton et al. 2015, temperature ``temperature``) from the teacher's
logits on the context's shared training batches (no labels needed), and scored by its accuracy on the
validation split. AKD trains each candidate for several epochs; a few steps from the supernet's weights is the
budget a search over hundreds of candidates can afford (a named simplification). Deterministic: the same batches,
no dropout, the same start for every call.
"""
from __future__ import annotations

from typing import Annotated

import torch

from nas_kd.device import to_memory_format
from nas_kd.evaluation import evaluate
from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView
from nas_kd.export import export_subnet
from nas_kd.losses.functional import kd_loss
from nas_kd.typecheck import AtLeast1, Range


@EVALUATORS.register("kd-proxy", example={"steps": 3})
class KDProxy(Evaluator):
    """Validation accuracy after ``steps`` KD steps from the inherited weights (AKD's reward)."""

    def __init__(self, *, steps: AtLeast1 = 20, lr: Annotated[float, Range(0, low_open=True)] = 0.01,
                 temperature: Annotated[float, Range(0, low_open=True)] = 4.0) -> None:
        self.steps, self.lr, self.temperature = steps, lr, temperature

    def raw(self, view: SubnetView) -> float:
        ctx = view.ctx
        ctx.supernet.set_arch(view.arch)  # the view recalibrated this arch's BatchNorm
        student = export_subnet(ctx.supernet, view.arch).to(ctx.device).train()
        opt = torch.optim.SGD(student.parameters(), lr=self.lr, momentum=0.9)
        batches = [to_memory_format(x.to(ctx.device), ctx.channels_last) for x in ctx.calibration]
        teacher = ctx.memo(("kd-proxy-teacher",), lambda: [_logits(ctx.teacher, x) for x in batches])
        for i in range(self.steps):
            x, t = batches[i % len(batches)], teacher[i % len(batches)]
            opt.zero_grad(set_to_none=True)
            kd_loss(student(x).float(), t, self.temperature).backward()
            opt.step()
        return evaluate(student, ctx.val, ctx.eval_batch_size, ctx.channels_last)["acc"]


@torch.no_grad()
def _logits(teacher: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return teacher.eval()(x).float()
