"""``p+tg``: TGSA's combined score (Bashivan, Tensen & DiCarlo, "Teacher Guided Architecture Search", ICCV 2019):
performance plus teacher guidance.

``score = performance_weight * z(accuracy) + guidance_weight * z(rdm)``: the subnet's validation accuracy and its
RDM similarity to the teacher (:class:`~nas_kd.evaluators.subnet_evaluators.RDM` with ``method``), each
z-scored against a fixed reference population: ``reference_archs`` archs drawn uniformly from the space with
``seed`` and scored once per context. A fixed population (rather than the candidates seen so far) makes the
score of an arch the same whatever else the search has scored, and a strategy's comparisons exact.
"""
from __future__ import annotations

import random
import statistics
from typing import Annotated, Literal

from nas_kd.errors import UserError
from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView
from nas_kd.evaluators.context import EvalContext, RecalibratedSubnet
from nas_kd.evaluators.subnet_evaluators import RDM
from nas_kd.typecheck import Range


@EVALUATORS.register("p+tg", example={"reference_archs": 3})
class PerformanceTeacherGuidance(Evaluator):
    """z-scored validation accuracy plus z-scored RDM similarity (TGSA's P+TG)."""

    def __init__(self, *, performance_weight: Annotated[float, Range(0)] = 1.0,
                 guidance_weight: Annotated[float, Range(0)] = 1.0, reference_archs: Annotated[int, Range(3)] = 20,
                 seed: int = 0, method: Literal["spearman", "pearson"] = "spearman") -> None:
        if performance_weight == guidance_weight == 0:
            raise UserError("performance_weight and guidance_weight are both 0: give one a weight")
        self.wp, self.wtg, self.n, self.seed = performance_weight, guidance_weight, reference_archs, seed
        self.rdm = RDM(method=method)

    def stages_needed(self, n_stages: int) -> int:
        return self.rdm.stages_needed(n_stages)

    def prepare(self, ctx: EvalContext) -> None:
        self.rdm.prepare(ctx)

        def population() -> tuple[tuple[float, float], tuple[float, float]]:
            rng = random.Random(self.seed)
            parts = [self.parts(RecalibratedSubnet(ctx, ctx.space.sample(rng))) for _ in range(self.n)]
            acc, tg = zip(*parts)
            return (statistics.mean(acc), statistics.stdev(acc) or 1.0), (statistics.mean(tg), statistics.stdev(tg) or 1.0)

        self.reference = ctx.memo(("p+tg", self.n, self.seed, self.rdm.method), population)

    def parts(self, view: SubnetView) -> tuple[float, float]:
        """(validation accuracy, RDM similarity) of one subnet."""
        return view.val_accuracy(), self.rdm.raw(view)

    def raw(self, view: SubnetView) -> float:
        (ma, sa), (mt, st) = self.reference
        acc, tg = self.parts(view)
        return self.wp * (acc - ma) / sa + self.wtg * (tg - mt) / st
