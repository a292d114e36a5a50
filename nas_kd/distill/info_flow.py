"""``info_flow``: information-flow distillation (Passalis, Tzelepi & Tefas, "Heterogeneous Knowledge Distillation
using Information Flow Modeling", CVPR 2020)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, NonNegative, Probability


@DISTILLERS.register("info_flow")
class InfoFlow(FeaturePairs):
    r"""The way information flows through the network, layer after layer, is transferred: at every stage pair the
    batch's conditional distributions (PKT's probabilities, from a cosine and a Student-t kernel) are matched by
    Jeffreys' divergence (:func:`nas_kd.losses.functional.flow_divergence`), the deepest pair at weight 1 and every
    shallower one at ``init_weight`` x ``decay`` ^ epoch: heavy while the network forms its early layers (the
    critical learning period), fading after. Defaults: the authors' CIFAR-10 run (100, 0.7). Simplifications,
    named: stage maps are globally pooled before the kernels; the paper's auxiliary teacher (a network shaped like
    the student, first taught by the teacher, that bridges heterogeneous architectures) is not built: the teachers
    here are residual networks like the students, and a recipe can give one as ``teacher`` (e.g.
    ``teacher.subnet``).

    Example: ``{name: info_flow, weight: 1.0}``.
    """

    pure_loss = staticmethod(LF.flow_divergence)

    needs_maps, key = False, "info_flow"

    def __init__(self, *, init_weight: NonNegative = 100.0, decay: Probability = 0.7, pairs: Pairs | None = None,
                 which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.init_weight, self.decay = float(init_weight), float(decay)

    def weights(self, epoch: int) -> list[float]:
        """Each pair's weight at ``epoch``: the deepest 1, the others ``init_weight * decay ** epoch``."""
        return [self.init_weight * self.decay**epoch] * (len(self.pairs) - 1) + [1.0]

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t_feats = view.teacher_feats[self.teacher]
        pool = lambda f: f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)  # noqa: E731
        terms = [w * LF.flow_divergence(pool(view.feats[s].float()), pool(t_feats[t].detach().float()))
                 for w, (s, t) in zip(self.weights(view.epoch), self.pairs)]
        return {self.key: torch.stack(terms).sum()}
