"""Online distillation: ``dml`` (deep mutual learning), several students teaching each other."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast2, Positive


@DISTILLERS.register("dml")
class DML(Distiller):
    r"""Deep mutual learning (Zhang et al., CVPR 2018): ``students`` copies of the student (different
    initialisations) train together; each adds the mean over its peers of
    :math:`T^2\,\mathrm{KL}(\sigma(z_j/T)\,\|\,\sigma(z_i/T))` with the peers' logits detached, next to
    its own cross-entropy. No external teacher. Every student is saved; the best on validation is reported.

    Example: ``{name: dml, weight: 1.0, students: 2}``.
    """

    needs_teacher = False

    def __init__(self, *, students: AtLeast2 = 2, temperature: Positive = 1.0) -> None:
        super().__init__()
        self.num_students, self.temperature = students, float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        losses = [LF.kd_loss(view.logits, peer.detach(), self.temperature) for peer in view.peer_logits]
        return {"dml": torch.stack(losses).mean()}
