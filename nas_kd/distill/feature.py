"""Feature-based distillation from a fixed teacher: ``hint`` (FitNets), ``at``, ``sp``, ``rkd``.

Each reads pairs of modules ``[[student_module, teacher_module], ...]`` by name. Without
``pairs``, the student's stages are paired with ``teacher.stages`` from the deepest stage up
(``which`` picks the pairs: ``all``, ``last`` or ``middle``). The loss is the mean over pairs.
Spatial sizes are matched by average-pooling the larger map when one size divides the other.
"""
from __future__ import annotations

from typing import Annotated, Literal

import torch
import torch.nn as nn

from nas_kd.distill.base import (
    DISTILLERS,
    Distiller,
    Probe,
    View,
    check_pair,
)
from nas_kd.errors import OptionError
from nas_kd.losses import functional as LF
from nas_kd.typecheck import Index, NonEmpty, NonNegative, Positive

Which = Literal["all", "last", "middle"]
Pairs = Annotated[list[tuple[str, str]], NonEmpty()]  # [[student_module, teacher_module], ...]


class FeaturePairs(Distiller):
    """Shared part of the feature methods: pair resolution, probing, per-pair loss averaging."""

    default_which = "all"
    needs_maps = True  # pairs must be 4-d feature maps
    key = "feature"

    def __init__(self, *, pairs: Pairs | None = None, which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__()
        which = which or self.default_which
        if pairs is not None and which != self.default_which:
            raise OptionError("give either pairs or which, not both")
        self.pairs = [tuple(p) for p in pairs] if pairs else None
        self.which, self.teacher = which, teacher

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        if self.pairs is None:
            t_stages = teacher_stages[self.teacher]
            if not student_stages or not t_stages:
                raise self.error("no default stage pairs (the student or the teacher has no known stages): give pairs")
            n = min(len(student_stages), len(t_stages))
            pairs = list(zip(student_stages[-n:], t_stages[-n:]))
            self.pairs = {"all": pairs, "last": pairs[-1:], "middle": [pairs[len(pairs) // 2]]}[self.which]

    def student_modules(self) -> list[str]:
        return [s for s, _ in self.pairs]

    def teacher_modules(self, teacher: int) -> list[str]:
        return [t for _, t in self.pairs] if teacher == self.teacher else []

    def bind(self, probe: Probe) -> None:
        for pair in self.pairs:
            check_pair(self.where, pair, probe.student_shapes[pair[0]], probe.teacher_shapes[self.teacher][pair[1]],
                       probe.logits_shape, maps=self.needs_maps)
        self.build([(probe.student_shapes[s], probe.teacher_shapes[self.teacher][t]) for s, t in self.pairs])

    def build(self, shapes: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> None:
        """Create learnable parts from the (student, teacher) shape of each pair (none by default)."""

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t_feats = view.teacher_feats[self.teacher]
        losses = [self.pair_loss(i, view.feats[s].float(), t_feats[t].detach().float()) for i, (s, t) in enumerate(self.pairs)]
        return {self.key: torch.stack(losses).mean()}


class StageChain(Distiller):
    """Shared part of the methods that relate successive stages of each side (``fsp``, ``kdsvd``): the deepest
    stages of both, paired from the end, at least two; every one a 4-d feature map (:meth:`stage_shapes`)."""

    def __init__(self, *, teacher: Index = 0) -> None:
        super().__init__()
        self.teacher = teacher

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        t_stages = teacher_stages[self.teacher]
        n = min(len(student_stages or []), len(t_stages or []))
        if n < 2:
            raise self.error("needs at least two stages on both sides (it relates successive stages)")
        self.s_stages, self.t_stages = list(student_stages[-n:]), list(t_stages[-n:])

    def student_modules(self) -> list[str]:
        return self.s_stages

    def teacher_modules(self, teacher: int) -> list[str]:
        return self.t_stages if teacher == self.teacher else []

    def stage_shapes(self, probe: Probe) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """The student's and the teacher's stage shapes; refuses any that is not a 4-d feature map."""
        s = [probe.student_shapes[n] for n in self.s_stages]
        t = [probe.teacher_shapes[self.teacher][n] for n in self.t_stages]
        if any(len(x) != 4 for x in s + t):
            raise self.error("every stage must output a 4-d feature map")
        return s, t


@DISTILLERS.register("hint")
class Hint(FeaturePairs):
    """FitNets (Romero et al., ICLR 2015): MSE between the teacher's feature map and the student's,
    mapped through a learned 1x1 conv + BatchNorm connector (one per pair; never exported).

    Default: the middle stage pair. Example: ``{name: hint, weight: 1.0, pairs: [[stage3, stage3]]}``.
    """

    pure_loss = staticmethod(LF.hint_loss)

    default_which, key = "middle", "hint"

    def build(self, shapes) -> None:
        self.connectors = nn.ModuleList(
            nn.Sequential(nn.Conv2d(s[1], t[1], 1, bias=False), nn.BatchNorm2d(t[1])) for s, t in shapes)

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LF.hint_loss(self.connectors[i](s), t)


@DISTILLERS.register("at")
class AT(FeaturePairs):
    r"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017): mean squared difference of the
    L2-normalised spatial attention maps :math:`\mathrm{mean}_c |f|^p`, over every stage pair by default.

    Example: ``{name: at, weight: 1000, p: 2}`` (the paper's beta is 1000 for this mean form).
    """

    pure_loss = staticmethod(LF.attention_transfer)

    key = "at"

    def __init__(self, *, p: Positive = 2.0, pairs: Pairs | None = None, which: Which | None = None,
                 teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.p = float(p)

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LF.attention_transfer(s, t, self.p)


@DISTILLERS.register("sp")
class SP(FeaturePairs):
    r"""Similarity-preserving KD (Tung & Mori, ICCV 2019): :math:`\|G_s - G_t\|_F^2 / B^2` of the
    row-normalised batch Gram matrices of the flattened features; the last stage pair by default.

    Example: ``{name: sp, weight: 3000}`` (the paper's gamma).
    """

    pure_loss = staticmethod(LF.similarity_preserving)

    default_which, needs_maps, key = "last", False, "sp"

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return LF.similarity_preserving(s, t)


@DISTILLERS.register("rkd")
class RKD(FeaturePairs):
    """Relational KD (Park et al., CVPR 2019): smooth-L1 between the student's and the teacher's
    mean-normalised pairwise distances and triplet angles of globally pooled embeddings; last stage pair by default.

    Example: ``{name: rkd, weight: 1.0, distance_weight: 25, angle_weight: 50}`` (the paper's weights).
    """

    pure_loss = staticmethod(LF.rkd_loss)

    default_which, needs_maps, key = "last", False, "rkd"

    def __init__(self, *, distance_weight: NonNegative = 25.0, angle_weight: NonNegative = 50.0,
                 pairs: Pairs | None = None, which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)

    def pair_loss(self, i: int, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pool = lambda f: f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)  # noqa: E731
        return LF.rkd_loss(pool(s), pool(t), self.distance_weight, self.angle_weight)
