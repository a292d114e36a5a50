"""DNA evaluators: an arch's score from the blockwise ranking tables (``nas-kd dna-rank``); lower is better."""
from __future__ import annotations

from nas_kd.dna.score import DnaScorer
from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView
from nas_kd.evaluators.context import EvalContext


class _Dna(Evaluator):
    metric, normalise = "rel_l1", "stage_mean"
    higher_is_better, reads_supernet = False, False

    def prepare(self, ctx: EvalContext) -> None:
        self.scorer = ctx.memo(("dna", self.metric, self.normalise),
                               lambda: DnaScorer(ctx.dna_data, self.metric, self.normalise))

    def raw(self, view: SubnetView) -> float:
        return self.scorer.score(view.arch)


@EVALUATORS.register("dna")
class Dna(_Dna):
    """DNA blockwise score (Li et al., CVPR 2020): per-stage relative L1 to the teacher, each stage divided by
    its mean, summed."""

    metric, normalise = "rel_l1", "stage_mean"


@EVALUATORS.register("dna-raw")
class DnaRaw(_Dna):
    """Sum of the stages' raw MSE, not normalised (the ablation of the normalisation)."""

    metric, normalise = "mse", "none"
