"""The built-in evaluators, registered by name."""
from __future__ import annotations

from nas_kd.evaluators.context import SubnetView
from nas_kd.evaluators.similarity import (
    centred_gram,
    linear_cka,
    mean_kl,
    rdm,
    rdm_similarity,
)
from nas_kd.registry import Registry

EVALUATORS: Registry = Registry("evaluator")


class Evaluator:
    """Scores one subnet; ``raw`` is the natural value, ``higher_is_better`` its direction."""

    name: str = ""
    higher_is_better: bool = True
    reads_supernet: bool = True  # False: the score ignores the supernet's weights (no subnet is recalibrated)

    def raw(self, view: SubnetView) -> float:
        raise NotImplementedError

    def oriented(self, raw: float) -> float:
        """The score with higher meaning better."""
        return raw if self.higher_is_better else -raw


@EVALUATORS.register("accuracy")
class Accuracy(Evaluator):
    """Top-1 accuracy on the validation split after BN recalibration."""

    name, higher_is_better = "accuracy", True

    def raw(self, view: SubnetView) -> float:
        return view.val_accuracy()


@EVALUATORS.register("kl")
class KL(Evaluator):
    """Mean KL(teacher || subnet) of the softmax outputs on the probe set (Gu & Tresp 2020); lower is better."""

    name, higher_is_better = "kl", False

    def raw(self, view: SubnetView) -> float:
        return mean_kl(view.ctx.teacher_logits, view.outputs[0])


@EVALUATORS.register("rdm")
class RDM(Evaluator):
    """TGSA (Bashivan et al. 2019): correlation of teacher and subnet RDMs, averaged over stage pairs."""

    name, higher_is_better = "rdm", True

    def raw(self, view: SubnetView) -> float:
        ctx, feats = view.ctx, view.outputs[1]
        sims = []
        for t, layers in view.paired():
            sims.append(max(rdm_similarity(ctx.teacher_rdms[t], rdm(feats[s], ctx.rdm_proj_dim), ctx.rdm_method)
                            for s in layers))
        return sum(sims) / len(sims)


@EVALUATORS.register("cka")
class CKA(Evaluator):
    """Linear CKA (Kornblith et al. 2019) of teacher and subnet features, averaged over stage pairs."""

    name, higher_is_better = "cka", True

    def raw(self, view: SubnetView) -> float:
        ctx, feats = view.ctx, view.outputs[1]
        sims = [max(linear_cka(ctx.teacher_grams[t], centred_gram(feats[s])) for s in layers)
                for t, layers in view.paired()]
        return sum(sims) / len(sims)


class _Dna(Evaluator):
    metric, normalise = "rel_l1", "stage_mean"
    higher_is_better, reads_supernet = False, False

    def raw(self, view: SubnetView) -> float:
        from nas_kd.dna.score import DnaScorer

        ctx = view.ctx
        key = f"_dna_{self.metric}_{self.normalise}"
        if key not in ctx._teacher:
            ctx._teacher[key] = DnaScorer(ctx.dna_data, self.metric, self.normalise)
        return ctx._teacher[key].score(view.arch)


@EVALUATORS.register("dna")
class Dna(_Dna):
    """DNA blockwise score: per-stage relative L1 to the teacher, each stage divided by its mean, summed."""

    name, metric, normalise = "dna", "rel_l1", "stage_mean"


@EVALUATORS.register("dna-raw")
class DnaRaw(_Dna):
    """Sum of the stages' raw MSE, not normalised (the ablation of the normalisation)."""

    name, metric, normalise = "dna-raw", "mse", "none"


@EVALUATORS.register("flops")
class Flops(Evaluator):
    """Exact FLOPs; as a quality proxy, more is better (the baseline every evaluator should beat)."""

    name, higher_is_better, reads_supernet = "flops", True, False

    def raw(self, view: SubnetView) -> float:
        return float(view.ctx.supernet.space.flops(view.arch))


@EVALUATORS.register("params")
class Params(Evaluator):
    """Exact parameter count; as a quality proxy, more is better."""

    name, higher_is_better, reads_supernet = "params", True, False

    def raw(self, view: SubnetView) -> float:
        return float(view.ctx.supernet.space.params(view.arch))
