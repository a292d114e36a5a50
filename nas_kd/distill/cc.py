"""``cc``: correlation congruence (Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast1, Index, Positive


@DISTILLERS.register("cc")
class CC(FeaturePairs):
    r"""The correlation between samples is transferred, not only each sample's output: :math:`\|C_s - C_t\|^2 /
    B^2` of the batch correlation matrices of the globally pooled, L2-normalised embeddings, by the order-``order``
    Taylor expansion of a Gaussian RBF kernel (:func:`nas_kd.losses.functional.cc_loss`; the paper's choice).
    Simplification: the paper adds the term to KD on a shared embedding layer; here it compares the stage outputs
    directly (the kernel needs no common width) and KD is a separate term of the recipe. Last stage pair by default.

    Example: ``{name: cc, weight: 50, gamma: 0.4}`` (beside cross-entropy; add ``kd`` for the paper's form).
    """

    pure_loss = staticmethod(LF.cc_loss)

    default_which, needs_maps, key = "last", False, "cc"

    def __init__(self, *, gamma: Positive = 0.4, order: AtLeast1 = 2, pairs: Pairs | None = None,
                 which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.gamma, self.order = float(gamma), int(order)

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pool = lambda f: f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)  # noqa: E731
        return LF.cc_loss(pool(s), pool(t), self.gamma, self.order)
