"""``nst``: neuron selectivity transfer (Huang & Wang, "Like What You Like: Knowledge Distill via Neuron
Selectivity Transfer", 2017)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS
from nas_kd.distill.feature import FeaturePairs
from nas_kd.losses import functional as LF


@DISTILLERS.register("nst")
class NST(FeaturePairs):
    """Each channel's spatial activation pattern (which positions a neuron selects), normalised, is one sample of
    its network's distribution; the student's distribution is pulled to the teacher's by the squared maximum mean
    discrepancy with the polynomial kernel ``(x . y)^2`` (the paper's best kernel;
    :func:`nas_kd.losses.functional.nst_loss`). No connector: MMD compares sets of any sizes. Every stage pair by
    default (the paper matches several depths).

    Example: ``[{name: kd, weight: 0.7}, {name: nst, weight: 25}]`` (the paper's lambda is 50 for its sum form).
    """

    pure_loss = staticmethod(LF.nst_loss)

    key = "nst"

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LF.nst_loss(s, t)
