"""Cost evaluators: exact FLOPs and parameters as quality proxies (the baselines every evaluator should beat)."""
from __future__ import annotations

from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView


@EVALUATORS.register("flops")
class Flops(Evaluator):
    """Exact FLOPs (fvcore's count); as a quality proxy, more is better."""

    higher_is_better, reads_supernet = True, False

    def raw(self, view: SubnetView) -> float:
        return float(view.ctx.space.flops(view.arch))


@EVALUATORS.register("params")
class Params(Evaluator):
    """Exact parameter count; as a quality proxy, more is better."""

    higher_is_better, reads_supernet = True, False

    def raw(self, view: SubnetView) -> float:
        return float(view.ctx.space.params(view.arch))
