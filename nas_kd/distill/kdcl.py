"""``kdcl``: Knowledge Distillation via Collaborative Learning (Guo et al., CVPR 2020)."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.losses import functional as LF
from nas_kd.data import augment
from nas_kd.typecheck import AtLeast2, Index, Positive


def ensemble_logits(logits: torch.Tensor, y: torch.Tensor, how: str) -> torch.Tensor:
    """The peers' ensemble target from ``logits`` (peers x batch x classes): ``min-logit`` (KDCL-MinLogit: each
    peer's logits minus its true-class logit, then the elementwise minimum over peers, the most confident
    target), ``best`` (per sample, the peer with the lowest cross-entropy) or ``mean``."""
    if how == "mean":
        return logits.mean(0)
    if how == "min-logit":
        true = logits.gather(2, y[None, :, None].expand(len(logits), -1, 1))
        return (logits - true).min(0).values
    ce = torch.stack([F.cross_entropy(z, y, reduction="none") for z in logits])  # peers x batch
    return logits[ce.argmin(0), torch.arange(logits.shape[1], device=logits.device)]


@DISTILLERS.register("kdcl")
class KDCL(Distiller):
    r"""``students`` peers (copies of the student, different initialisations) train together, each on its own
    labels plus :math:`T^2\,\mathrm{KL}(\sigma(e/T)\,\|\,\sigma(z_i/T))` where :math:`e` is the ensemble of every
    peer's detached logits (``ensemble``: ``min-logit``, ``best`` or ``mean``, see :func:`ensemble_logits`). As in
    the paper, each peer can see its own random augmentation of the batch (``views_pad``: a random crop after that
    many pixels of black padding, ``views_flip``: a random horizontal flip; drawn per peer and step), on top of the
    data's own augmentation; with neither, every peer sees the batch as loaded. No external teacher; every peer is
    saved and the best on validation is reported.

    Example: ``{name: kdcl, weight: 1.0, students: 2, ensemble: min-logit, views_pad: 2}``.
    """

    needs_teacher = False

    def __init__(self, *, students: AtLeast2 = 2, temperature: Positive = 2.0,
                 ensemble: Literal["min-logit", "best", "mean"] = "min-logit", views_pad: Index = 0,
                 views_flip: bool = False) -> None:
        super().__init__()
        self.num_students, self.temperature, self.ensemble = students, float(temperature), ensemble
        self.views_pad, self.views_flip = int(views_pad), bool(views_flip)

    def student_input(self, x: torch.Tensor, student: int, generator: torch.Generator,
                      pad_value: torch.Tensor) -> torch.Tensor:
        if not (self.views_pad or self.views_flip):
            return x
        return augment(x.cpu(), generator, self.views_pad, pad_value.cpu(), self.views_flip).to(x.device)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        everyone = torch.stack([view.logits.detach().float(), *(p.float() for p in view.peer_logits)])
        target = ensemble_logits(everyone, view.y, self.ensemble)
        return {"kdcl": LF.kd_loss(view.logits, target, self.temperature)}
