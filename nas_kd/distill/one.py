"""``one``: On-the-fly Native Ensemble (Lan, Zhu & Gong, "Knowledge Distillation by On-the-fly Native Ensemble",
NeurIPS 2018)."""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast2, Positive


@DISTILLERS.register("one", example={"branches": 2})
class ONE(Distiller):
    r"""The student becomes one branch of a multi-branch network: ``branches - 1`` more copies of everything after
    stage ``branch_at`` (default: the student's stage before its last; each copy freshly initialised) share the
    student's trunk, and a gate (global pooling, linear, BatchNorm, ReLU, softmax over branches) reads the trunk's
    features and weighs every branch's logits into the ensemble :math:`e = \sum_i g_i z_i`, the on-the-fly teacher.
    Terms: ``one_ce`` :math:`\sum_{i \ge 1} \mathrm{CE}(z_i) + \mathrm{CE}(e)` (the student's own CE is the
    trainer's), and ``one_kd`` :math:`T^2 \sum_i \mathrm{KL}(\sigma(e/T) \,\|\, \sigma(z_i/T))` over every branch,
    the student's included, with the ensemble detached as a teacher. The student (branch 0) is what is exported, as
    the paper deploys one branch; the extra branches and the gate are the method's parameters, and
    :meth:`report` gives the test accuracy of each branch and of the gated ensemble (ONE-E). No external teacher.

    Needs a nas_kd network as the student (``stem``, ``stage1..K``, ``head``): the branches copy its modules.

    Example: ``{name: one, weight: 1.0, branches: 3, temperature: 3}``.
    """

    needs_teacher = False

    def __init__(self, *, branches: AtLeast2 = 3, temperature: Positive = 3.0, branch_at: str | None = None) -> None:
        super().__init__()
        self.num_branches, self.temperature, self.branch_at = int(branches), float(temperature), branch_at

    def resolve(self, student_stages: list[str] | None, teacher_stages: list[list[str]], num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        if not student_stages or len(student_stages) < 2:
            raise self.error("branches a nas_kd network (stem, stage1..K, head); this student has no known stages")
        if self.branch_at is None:
            self.branch_at = student_stages[-2]
        if self.branch_at not in student_stages[:-1]:
            raise self.error(f"branch_at {self.branch_at!r} is not one of the student's stages before its last "
                             f"({', '.join(student_stages[:-1])})")
        self.after = student_stages[student_stages.index(self.branch_at) + 1:]

    def see_student(self, student: nn.Module) -> None:
        if not isinstance(getattr(student, "head", None), nn.Module):
            raise self.error("branches a nas_kd network (stem, stage1..K, head); this student has no head module")
        tail = nn.Sequential(*(copy.deepcopy(student.get_submodule(n)) for n in self.after),
                             copy.deepcopy(student.head))
        self.extra = nn.ModuleList()
        for _ in range(self.num_branches - 1):
            branch = copy.deepcopy(tail)
            for m in branch.modules():  # a fresh initialisation, as each of the paper's branches has
                if hasattr(m, "reset_parameters") and m is not branch:
                    m.reset_parameters()
            self.extra.append(branch)

    def student_modules(self) -> list[str]:
        return [self.branch_at]

    def bind(self, probe: Probe) -> None:
        width = probe.student_shapes[self.branch_at][1]
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, self.num_branches),
                                  nn.BatchNorm1d(self.num_branches), nn.ReLU())

    def outputs(self, trunk: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(every branch's logits, branches x batch x classes, the student's first; the gated ensemble's)."""
        z = torch.stack([logits.float(), *(b(trunk).float() for b in self.extra)])
        g = F.softmax(self.gate(trunk).float(), 1)  # batch x branches
        return z, torch.einsum("nb,bnc->nc", g, z)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        z, e = self.outputs(view.feats[self.branch_at].float(), view.logits)
        ce = sum(F.cross_entropy(zi, view.y) for zi in z[1:]) + F.cross_entropy(e, view.y)
        kd = sum(LF.kd_loss(zi, e.detach(), self.temperature) for zi in z)
        return {"one_ce": ce, "one_kd": kd}

    def report(self, model: nn.Module, split: Any, batch_size: int) -> dict[str, Any]:
        """Test accuracy of each branch (the student's first) and of the gated ensemble."""
        from nas_kd.features import capture

        self.cpu().eval()
        model = model.cpu().eval()
        right = torch.zeros(self.num_branches + 1)
        with torch.no_grad():
            for i in range(0, len(split), batch_size):
                with capture(model, [self.branch_at]) as f:
                    logits = model(split.x[i:i + batch_size])
                z, e = self.outputs(f[self.branch_at].float(), logits)
                y = split.y[i:i + batch_size]
                right += torch.stack([*(zi.argmax(1) == y for zi in z), e.argmax(1) == y]).float().sum(1)
        acc = (right / len(split)).tolist()
        return {"branches_acc": acc[:-1], "ensemble_acc": acc[-1], "images": len(split)}
