"""``ft``: factor transfer (Kim, Park & Kwak, "Paraphrasing Complex Network: Network Compression via Factor
Transfer", NeurIPS 2018)."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.typecheck import Index, Range


def _conv(cin: int, cout: int, transpose: bool = False) -> nn.Sequential:
    conv = (nn.ConvTranspose2d if transpose else nn.Conv2d)(cin, cout, 3, padding=1, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.1))


@DISTILLERS.register("ft")
class FT(FeaturePairs):
    r"""The teacher's last-stage map is "paraphrased" into factors by a convolutional autoencoder (its encoder
    narrows the map to ``rate`` x its channels), the student's map is "translated" into factors of that width by two
    convolutions, and the student matches the teacher's factors: :math:`\| F_T / \|F_T\|_2 - F_S / \|F_S\|_2 \|_1`
    per sample, batch mean (the paper's p = 1). The paraphraser learns by its own reconstruction loss
    (``ft_paraphraser``: MSE of the teacher's map, which is fixed) and nothing else; the factor loss (``ft``) moves only
    the student and the translator (the teacher's factors are detached). Simplification, named: the paper trains the
    paraphraser first and freezes it; here it trains alongside, from the first step. All learned parts are never
    exported.

    Example: ``{name: ft, weight: 200}`` (RepDistiller's CIFAR weight, beside CE 1).
    """

    default_which, key = "last", "ft"

    def __init__(self, *, rate: Annotated[float, Range(0, 1, low_open=True)] = 0.5, pairs: Pairs | None = None,
                 which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.rate = float(rate)

    def build(self, shapes) -> None:
        if len(shapes) != 1:
            raise self.error(f"transfers one pair's factors, got {len(shapes)} pairs")
        (s, t), = shapes
        factor = max(1, round(t[1] * self.rate))
        self.encoder = nn.Sequential(_conv(t[1], t[1]), _conv(t[1], factor))
        self.decoder = nn.Sequential(_conv(factor, t[1], transpose=True), _conv(t[1], t[1], transpose=True))
        self.translator = nn.Sequential(_conv(s[1], s[1]), _conv(s[1], factor))

    @staticmethod
    def factor_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the L1 distance of the L2-normalised, flattened factors (the larger map pooled)."""
        from nas_kd.losses.functional import match_spatial

        s, t = match_spatial(student, teacher)
        return (F.normalize(s.flatten(1), dim=1) - F.normalize(t.flatten(1), dim=1)).abs().sum(1).mean()

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        s_name, t_name = self.pairs[0]
        t = view.teacher_feats[self.teacher][t_name].detach().float()
        factors = self.encoder(t)
        reconstruction = F.mse_loss(self.decoder(factors), t)
        return {"ft": self.factor_loss(self.translator(view.feats[s_name].float()), factors.detach()),
                "ft_paraphraser": reconstruction}
