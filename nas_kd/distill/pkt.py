"""``pkt``: probabilistic knowledge transfer (Passalis & Tefas, "Learning Deep Representations with Probabilistic
Knowledge Transfer", ECCV 2018)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS
from nas_kd.distill.feature import FeaturePairs
from nas_kd.losses import functional as LF


@DISTILLERS.register("pkt")
class PKT(FeaturePairs):
    """The relations between samples as probability distributions: each sample's conditional distribution over
    the batch from a cosine-similarity kernel of the flattened features, matched teacher to student by KL
    (:func:`nas_kd.losses.functional.pkt_loss`). No connector: the kernel compares features of any widths. The
    paper transfers the last layer's representation; the last stage pair by default here.

    Example: ``{name: pkt, weight: 30000}`` (the loss is small: a few 1e-4 on random features).
    """

    pure_loss = staticmethod(LF.pkt_loss)

    default_which, needs_maps, key = "last", False, "pkt"

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LF.pkt_loss(s, t)
