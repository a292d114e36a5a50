"""``progressive``: OFA's progressive shrinking (Cai et al., "Once-for-All", ICLR 2020).

Training runs in phases, each starting from the weights the previous one left: ``full`` trains the largest
subnet alone (hard labels, plus ``max_teacher_weight`` x KD from the fixed teacher), then each phase
opens one more elastic dimension (OFA's order: ``kernel``, ``depth``, ``expand``; this toolkit's spaces also
have an elastic stage ``width``). Within a phase every step is the sandwich rule of :mod:`nas_kd.train.supernet`
over the dimensions opened so far (the others stay at their largest value): the max subnet on the hard
labels, the restricted min subnet and ``num_random`` restricted samples on ``soft_labels``
(``inplace``, OFA's in-place distillation from the largest net, or the fixed teacher).

Channel sorting (OFA section 3.2): before the phase that opens ``expand``, every block's inner channels are
re-sorted by importance, the L1 norm of the weights that read them, so that a smaller expand ratio keeps the
most important ones; before the phase that opens ``width``, each stage's output channels are re-sorted the same
way (all the stage's blocks write them through the residual stream; the next stage or the head reads them).
The permutation is applied to the writers' weights and BatchNorm, to the readers' weights, and to the
optimiser's state of those weights, so the largest net computes exactly what it computed before.

Options: ``phases`` (an ordered mapping phase -> epochs summing to ``train.epochs``; None: the default order
with the epochs split evenly, earlier phases taking the remainder), ``sort_channels``. The position in the
phases follows the epoch, and the sorting done is part of every checkpoint, so a resumed run is exact.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

import search_spaces
from nas_kd.config import SupernetConfig
from nas_kd.errors import UserError
from nas_kd.layers import DynamicConvBN
from nas_kd.supernet import Supernet
from nas_kd.train.registry import SUPERNET_TRAINERS
from nas_kd.train.supernet import Kit, Sandwich

DIMENSIONS = {"kernel": ("kernel",), "depth": ("depth",), "expand": ("expand", "ratio"), "width": ("width",)}
ORDER = ("full", "kernel", "depth", "expand", "width")


def label_dimension(label: str) -> str:
    """The elastic dimension of a choice label (``stage2.block0.expand`` -> ``expand``)."""
    last = label.rsplit(".", 1)[-1]
    for dim, names in DIMENSIONS.items():
        if last in names:
            return dim
    raise ValueError(f"choice {label!r} belongs to no elastic dimension of {list(DIMENSIONS)}")


def restrict(space, arch: dict[str, Any], opened: set[str]) -> dict[str, Any]:
    """``arch`` with every choice of a dimension not yet ``opened`` at its largest value."""
    return space.canonical({label: value if label_dimension(label) in opened else max(space.choices[label])
                            for label, value in arch.items()})


@torch.no_grad()
def permute_channels(writers: list[DynamicConvBN], readers: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                     order: torch.Tensor) -> None:
    """Reorder a set of channels: dim 0 of the ``writers``' conv weights and BatchNorm, dim 1 of the ``readers``,
    and the optimiser's state of each of those parameters alike."""
    def apply(t: torch.Tensor, dim: int) -> None:
        t.copy_(t.index_select(dim, order.to(t.device)))

    params: list[tuple[nn.Parameter, int]] = []
    for w in writers:
        params += [(w.conv.weight, 0), (w.bn.weight, 0), (w.bn.bias, 0)]
        apply(w.bn.running_mean, 0)
        apply(w.bn.running_var, 0)
    params += [(r, 1) for r in readers]
    for p, dim in params:
        apply(p.data, dim)
        for v in optimizer.state.get(p, {}).values():
            if torch.is_tensor(v) and v.shape == p.shape:
                apply(v, dim)


def importance(readers: list[nn.Parameter]) -> torch.Tensor:
    """Per channel, the L1 norm of every weight that reads it (dim 1 of each reader)."""
    return sum(r.detach().abs().transpose(0, 1).reshape(r.shape[1], -1).sum(1) for r in readers)


def sort_inner_channels(net: Supernet, optimizer: torch.optim.Optimizer) -> None:
    """Every block's inner channels, most important first."""
    for name in net.stage_names:
        for block in getattr(net, name).blocks:
            writers, readers = block.inner_channels()
            permute_channels(writers, readers, optimizer, importance(readers).argsort(descending=True, stable=True))


def sort_stage_widths(net: Supernet, optimizer: torch.optim.Optimizer) -> None:
    """Every stage's output channels, most important first (read by the stage's later blocks and by the next
    stage's first block, or the head)."""
    stages = [getattr(net, name).blocks for name in net.stage_names]
    for i, blocks in enumerate(stages):
        writers = [w for b in blocks for w in b.outer_channels()[0]]
        readers = [r for b in blocks[1:] for r in b.outer_channels()[1]]
        readers += stages[i + 1][0].outer_channels()[1] if i + 1 < len(stages) else [net.head[-1].weight]
        permute_channels(writers, readers, optimizer, importance(readers).argsort(descending=True, stable=True))


@SUPERNET_TRAINERS.register("progressive", example={"phases": {"width": 1}})  # one short phase, sorting included
@dataclass(kw_only=True)
class Progressive(Sandwich):
    """OFA progressive shrinking: phases that open the elastic dimensions one at a time, channels sorted by
    importance before the ``expand`` and ``width`` phases."""

    phases: dict[str, int] | None = None
    sort_channels: bool = True
    sorted: list[str] = field(init=False, default_factory=list)
    present: set[str] = field(init=False, default_factory=lambda: set(DIMENSIONS))  # the space's (set by check)

    def __post_init__(self) -> None:
        super().__post_init__()
        phases = self.phases
        if phases is not None:
            unknown = [p for p in phases if p not in ORDER]
            if unknown:
                raise UserError(f"phases: unknown phase(s) {unknown}; phases: {', '.join(ORDER)}")
            if "full" in phases and next(iter(phases)) != "full":
                raise UserError("phases: 'full' (the largest net alone) can only come first")
            bad = {p: e for p, e in phases.items() if not isinstance(e, int) or isinstance(e, bool) or e < 1}
            if bad:
                raise UserError(f"phases: epochs must be whole numbers >= 1, got {bad}")

    def schedule(self, epochs: int) -> list[tuple[str, int]]:
        """(phase, epochs) in order: the given phases, or the default order (the space's dimensions only) sharing
        ``epochs`` evenly."""
        if self.phases is not None:
            return list(self.phases.items())
        order = [p for p in ORDER if p == "full" or p in self.present]
        if epochs < len(order):
            raise UserError(f"supernet.mode (progressive): train.epochs {epochs} is fewer than its {len(order)} "
                            f"default phases {order}: give phases with their epochs")
        base, extra = divmod(epochs, len(order))
        return [(p, base + (i < extra)) for i, p in enumerate(order)]

    def check(self, cfg: SupernetConfig, epochs: int) -> None:
        space = search_spaces.get(cfg.space)
        self.present = {label_dimension(label) for label in space.choices}
        missing = [p for p in (self.phases or {}) if p != "full" and p not in self.present]
        if missing:
            raise UserError(f"supernet.mode (progressive): the {space.name} space has no elastic {missing}; its "
                            f"dimensions: {sorted(self.present)}")
        total = sum(e for _, e in self.schedule(epochs))
        if total != epochs:
            raise UserError(f"supernet.mode (progressive): the phases' epochs sum to {total}, train.epochs is "
                            f"{epochs}: make them equal")

    def phase_at(self, epoch: int, epochs: int) -> tuple[str, set[str]]:
        """The phase training ``epoch`` and the dimensions opened by then."""
        opened: set[str] = set()
        end = 0
        for phase, n in self.schedule(epochs):
            if phase != "full":
                opened.add(phase)
            end += n
            if epoch < end:
                return phase, opened
        raise ValueError(f"epoch {epoch} is past the phases")

    def begin(self, kit: Kit) -> None:
        self.sorted = []

    def state_dict(self) -> dict[str, Any]:
        return {"sorted": list(self.sorted)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sorted = list(state.get("sorted", []))

    def others(self, kit: Kit, rng: random.Random) -> list[dict]:
        phase, opened = self.phase_at(kit.loop.state.epoch, kit.job.train.epochs)
        if phase == "full":
            return []
        return [restrict(kit.space, a, opened) for a in super().others(kit, rng)]

    def step(self, kit: Kit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        _, opened = self.phase_at(kit.loop.state.epoch, kit.job.train.epochs)
        if self.sort_channels:
            for dim, sort in (("expand", sort_inner_channels), ("width", sort_stage_widths)):
                if dim in opened and dim not in self.sorted:
                    sort(kit.net, kit.loop.optimizer)
                    self.sorted.append(dim)
        return super().step(kit, x, y)

    def report(self, kit: Kit) -> dict[str, Any]:
        return {"phases": self.schedule(kit.job.train.epochs), "sorted": self.sorted}
