"""``multi_hint``: feature-level distillation from several teachers (the feature side of multi-teacher KD; FEED,
Park & Kwak, "Feature-level Ensemble Knowledge Distillation", 2020)."""
from __future__ import annotations

from typing import Annotated

import torch
import torch.nn as nn

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.distill.feature import Hint, Which
from nas_kd.typecheck import Index, NonEmpty


@DISTILLERS.register("multi_hint")
class MultiHint(Distiller):
    r"""FitNets against every teacher at once: for each teacher of ``teachers`` (default: all of the recipe's), the
    student's stage map goes through a learned 1x1 conv + BatchNorm connector of its own to that teacher's width,
    and the loss is the mean over teachers of the MSE to that teacher's map (teachers of different widths cannot be
    averaged map to map; FEED's form, with a connector per teacher, averages what they teach instead). ``which``
    picks the stage pairs per teacher as ``hint`` does (default the middle one). ``multi_teacher`` is the logit
    counterpart. Connectors are never exported.

    Example: ``{name: multi_hint, weight: 100}`` with ``extra_teachers`` in the recipe.
    """

    key = "multi_hint"

    def __init__(self, *, teachers: Annotated[list[Index], NonEmpty()] | None = None, which: Which = "middle") -> None:
        super().__init__()
        self.chosen, self.which = teachers, which

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        chosen = self.chosen if self.chosen is not None else list(range(num_teachers))
        if len(chosen) < 2 or len(set(chosen)) != len(chosen):
            raise self.error(f"needs two or more distinct teachers, got {chosen} (set extra_teachers in the recipe)")
        self.parts = nn.ModuleList(Hint(which=self.which, teacher=k) for k in chosen)
        for part in self.parts:
            part.where = self.where
            part.resolve(student_stages, teacher_stages, num_teachers)

    def student_modules(self) -> list[str]:
        return list(dict.fromkeys(s for part in self.parts for s in part.student_modules()))

    def teacher_modules(self, teacher: int) -> list[str]:
        return [t for part in self.parts for t in part.teacher_modules(teacher)]

    def bind(self, probe: Probe) -> None:
        for part in self.parts:
            part.bind(probe)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {self.key: torch.stack([part(view)["hint"] for part in self.parts]).mean()}
