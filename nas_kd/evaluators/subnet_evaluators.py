"""Evaluators that read a weight-sharing supernet's subnet (BN-recalibrated): accuracy, and its similarity to
the teacher by outputs (KL) and by representations (RDM, CKA)."""
from __future__ import annotations

from typing import Annotated, Literal

from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView
from nas_kd.evaluators.context import EvalContext
from nas_kd.evaluators.similarity import centred_gram, linear_cka, mean_kl, rdm, rdm_similarity
from nas_kd.typecheck import Range

Pairing = Literal["stage", "best"]  # stage: teacher stage i vs subnet stage i; best: the best-matching subnet layer


@EVALUATORS.register("accuracy")
class Accuracy(Evaluator):
    """Top-1 accuracy on the validation split after BN recalibration."""

    def raw(self, view: SubnetView) -> float:
        return view.val_accuracy()


@EVALUATORS.register("kl")
class KL(Evaluator):
    """Mean KL(teacher || subnet) of the softmax outputs on the probe set (Gu & Tresp 2020); lower is better."""

    higher_is_better = False

    def raw(self, view: SubnetView) -> float:
        return mean_kl(view.ctx.teacher_logits, view.outputs[0])


@EVALUATORS.register("rdm")
class RDM(Evaluator):
    """TGSA (Bashivan et al., ICCV 2019): correlation of teacher and subnet representational dissimilarity
    matrices over the probe images, averaged over stage pairs; higher is better.

    Options: ``method`` (spearman | pearson correlation of the RDMs), ``proj_dim`` (random projection of
    wider layers to this many units before the RDM; None: never), ``pairing``."""

    def __init__(self, *, method: Literal["spearman", "pearson"] = "spearman",
                 proj_dim: Annotated[int, Range(2)] | None = None, pairing: Pairing = "stage") -> None:
        self.method, self.proj_dim, self.pairing = method, proj_dim, pairing

    def stages_needed(self, n_stages: int) -> int:
        return n_stages if self.pairing == "stage" else 1

    def prepare(self, ctx: EvalContext) -> None:
        ctx.require_stages(self.stages_needed(len(ctx.space.stages)), f"evaluator {self.name or 'rdm'}",
                           self.pairing == "stage")
        self.teacher_rdms = ctx.memo(("rdm", self.proj_dim),
                                     lambda: {n: rdm(f, self.proj_dim) for n, f in ctx.teacher_outputs[1].items()})

    def raw(self, view: SubnetView) -> float:
        feats = view.outputs[1]
        sims = [max(rdm_similarity(self.teacher_rdms[t], rdm(feats[s], self.proj_dim), self.method) for s in layers)
                for t, layers in view.paired(self.pairing)]
        return sum(sims) / len(sims)


@EVALUATORS.register("cka")
class CKA(Evaluator):
    """Linear CKA (Kornblith et al., ICML 2019) of teacher and subnet features, averaged over stage pairs."""

    def __init__(self, *, pairing: Pairing = "stage") -> None:
        self.pairing = pairing

    def stages_needed(self, n_stages: int) -> int:
        return n_stages if self.pairing == "stage" else 1

    def prepare(self, ctx: EvalContext) -> None:
        ctx.require_stages(self.stages_needed(len(ctx.space.stages)), f"evaluator {self.name or 'cka'}",
                           self.pairing == "stage")
        self.teacher_grams = ctx.memo(("cka",), lambda: {n: centred_gram(f) for n, f in ctx.teacher_outputs[1].items()})

    def raw(self, view: SubnetView) -> float:
        feats = view.outputs[1]
        sims = [max(linear_cka(self.teacher_grams[t], centred_gram(feats[s])) for s in layers)
                for t, layers in view.paired(self.pairing)]
        return sum(sims) / len(sims)
