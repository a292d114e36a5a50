"""``rco``: Route-Constrained Optimization (Jin et al., "Knowledge Distillation via Route Constrained
Optimization", ICCV 2019)."""
from __future__ import annotations

import torch

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast1, Index, Positive


@DISTILLERS.register("rco", example={"route": [0, 0]})
class RCO(Distiller):
    r"""The student follows the teacher's training route: checkpoints the teacher passed through on its way
    (anchor points, easiest first) teach it in turn, each for ``epochs_per_anchor`` epochs by
    :math:`T^2\,\mathrm{KL}(\sigma(t_k/T)\,\|\,\sigma(s/T))`, and the last (the converged teacher) for the rest of
    training. The anchors are the recipe's teachers (``teacher`` is number 0, ``extra_teachers`` 1, 2, ...:
    e.g. epoch checkpoints of one teacher), taken in the order ``route`` names them (default: the extra teachers in
    their order, then the teacher). The paper picks its anchors by a greedy search over the route's checkpoints;
    here they are given.

    Example: ``{name: rco, weight: 0.9, temperature: 4, epochs_per_anchor: 2}`` with
    ``extra_teachers: [{checkpoint: teacher_epoch2.pt}, {checkpoint: teacher_epoch5.pt}]``.
    """

    logits_only = True

    def __init__(self, *, route: list[Index] | None = None, epochs_per_anchor: AtLeast1 = 1,
                 temperature: Positive = 4.0) -> None:
        super().__init__()
        self.route, self.epochs_per_anchor, self.temperature = route, int(epochs_per_anchor), float(temperature)

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        if self.route is None:
            self.route = [*range(1, num_teachers), 0]
        if len(self.route) < 2:
            raise self.error("follows a route of at least two teacher checkpoints: add extra_teachers (earlier "
                             "checkpoints of the teacher) or name them in route")
        if unknown := [k for k in self.route if k >= num_teachers]:
            raise self.error(f"route names teacher {unknown[0]} but the recipe gives {num_teachers} teacher(s)")

    def anchor(self, epoch: int) -> int:
        """The teacher that teaches at ``epoch``."""
        return self.route[min(epoch // self.epochs_per_anchor, len(self.route) - 1)]

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        target = view.teacher_logits[self.anchor(view.epoch)]
        return {"rco": LF.kd_loss(view.logits, target, self.temperature)}
