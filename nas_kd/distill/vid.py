"""``vid``: Variational Information Distillation (Ahn et al., CVPR 2019)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.errors import OptionError
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, Positive


@DISTILLERS.register("vid")
class VID(FeaturePairs):
    r"""Maximise a variational lower bound of the mutual information between teacher and student features:
    the teacher's feature map :math:`t` is modelled as a Gaussian whose mean :math:`\mu(s)` a regressor
    (1x1 conv, ReLU, 1x1 conv, ReLU, 1x1 conv, as in the paper) predicts from the student's map, with one learned
    variance per teacher channel, :math:`\sigma_c^2 = \mathrm{softplus}(\alpha_c) + \epsilon`. The loss is the
    negative log-likelihood without its constant,
    :math:`\mathrm{mean}_{b,c,h,w}\,\tfrac12\,(\log\sigma_c^2 + (t - \mu(s))^2 / \sigma_c^2)`, averaged over the
    stage pairs (all by default). Regressor and variances train with the student and are never exported;
    ``init_var`` is every channel's starting variance.

    Example: ``{name: vid, weight: 1.0}``.
    """

    key = "vid"

    def __init__(self, *, init_var: Positive = 5.0, eps: Positive = 1e-5, pairs: Pairs | None = None,
                 which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        if not init_var > eps:
            raise OptionError(f"need init_var > eps, got init_var={init_var}, eps={eps}")
        self.init_var, self.eps = float(init_var), float(eps)

    def build(self, shapes) -> None:
        def regressor(cin: int, cout: int) -> nn.Module:
            return nn.Sequential(nn.Conv2d(cin, cout, 1), nn.ReLU(), nn.Conv2d(cout, cout, 1), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 1))

        self.regressors = nn.ModuleList(regressor(s[1], t[1]) for s, t in shapes)
        start = math.log(math.expm1(self.init_var - self.eps))  # softplus^-1
        self.alphas = nn.ParameterList(nn.Parameter(torch.full((t[1],), start)) for _, t in shapes)

    def variance(self, i: int) -> torch.Tensor:
        return F.softplus(self.alphas[i]) + self.eps

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        mu, t = LF.match_spatial(self.regressors[i](s), t)
        var = self.variance(i)[None, :, None, None]
        return 0.5 * (var.log() + (t - mu).pow(2) / var).mean()
