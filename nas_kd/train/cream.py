"""``cream``: Cream of the Crop (Peng et al., "Distilling Prioritized Paths for One-Shot Neural Architecture
Search", NeurIPS 2020).

One path per step (``sampler``, as in SPOS), taught by the best paths seen so far. A *board* keeps the
``board_size`` prioritized paths: after each step the sampled path enters it when the board is not full, when
its accuracy on the batch beats the board's worst by more than ``margin`` points, or when it beats the worst at
fewer FLOPs; the board is kept sorted (accuracy, then lower FLOPs) and cut to ``board_size``. Once the board holds
a path (and after ``warmup_epochs``), the sampled path learns from
``((2 - m) * CE + m * D) / 2`` where D is the ``distill`` terms with the teaching path's logits as soft
labels (the paper: soft cross-entropy, i.e. ``kd`` at temperature 1), and ``m`` the matching weight.

**Simplification (named, as the issue allows):** the paper picks, for each sampled path, the board path that a
small meta-network rates as the best match, weights the distillation by that rating, and trains the
meta-network with a one-step-lookahead meta-gradient on held-out batches. Here the board's best path teaches
every sampled path with ``m = 0.5``: the ``top1`` pick method of the authors' implementation. No matching
network, no meta-gradient.

The board is part of every checkpoint (a resumed run is exact) and of ``final.json``; the ``cream-board``
search strategy scores its paths. The teachers are the supernet's own paths: ``soft_labels`` must be
``inplace`` (or ``none``: no distillation, the board is still kept).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from nas_kd.errors import UserError
from nas_kd.train import distributed as dist
from nas_kd.train.registry import SUPERNET_TRAINERS
from nas_kd.train.supernet import Kit, WeightSharing
from nas_kd.typecheck import AtLeast1, Range


@SUPERNET_TRAINERS.register("cream")
@dataclass(kw_only=True)
class Cream(WeightSharing):
    """One path per step, distilled from the best path of a board of prioritized paths."""

    board_size: AtLeast1 = 10
    margin: Annotated[float, Range(0)] = 5.0
    match_weight: Annotated[float, Range(0, 2)] = 0.5
    warmup_epochs: Annotated[int, Range(0)] = 0
    board: list[dict[str, Any]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.soft_labels not in ("inplace", "none"):
            raise UserError(f"its teachers are its own board's paths, so soft_labels must be 'inplace' (or 'none'), "
                            f"not {self.soft_labels!r}")

    def begin(self, kit: Kit) -> None:
        self.board = []

    def state_dict(self) -> dict[str, Any]:
        return {"board": [dict(e) for e in self.board]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.board = [dict(e) for e in state.get("board", [])]

    def offer(self, arch: dict[str, Any], acc: float, mflops: float) -> None:
        """Let a path onto the board (see the module's rule), keeping only the ``board_size`` best."""
        arch = json.loads(json.dumps(arch))  # plain str keys (not nni's label type): a checkpoint loads it safely
        if any(e["arch"] == arch for e in self.board):
            self.board = [e for e in self.board if e["arch"] != arch]  # its newer figure replaces the old one
        worst = self.board[-1] if len(self.board) >= self.board_size else None
        if worst is None or acc > worst["acc"] + self.margin or (acc > worst["acc"] and mflops < worst["mflops"]):
            self.board.append({"arch": arch, "acc": acc, "mflops": mflops})
            self.board.sort(key=lambda e: (-e["acc"], e["mflops"]))
            del self.board[self.board_size:]

    def step(self, kit: Kit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        arch = kit.sampler.sample(kit.rng(), 1)[0]
        logits = kit.forward(arch, x)
        loss = kit.hard_loss(logits, y)
        teaching = bool(self.board) and self.soft_labels != "none" and kit.loop.state.epoch >= self.warmup_epochs
        if teaching:
            with torch.no_grad():
                soft = kit.forward(self.board[0]["arch"], x)
            m = self.match_weight
            loss = ((2 - m) * loss + m * kit.distill(logits, y, soft)) / 2
        loss.backward()
        correct = (logits.argmax(1) == y).sum().item()
        if kit.loop.state.epoch >= self.warmup_epochs:  # every rank judges the whole batch: the boards agree
            whole = dist.sum_over_ranks(correct, kit.device), dist.sum_over_ranks(len(y), kit.device)
            self.offer(arch, 100.0 * whole[0] / whole[1], kit.space.flops(arch) / 1e6)
        return {"loss": loss.item() * len(y), "acc": correct, "count": len(y), "taught": float(teaching) * len(y)}

    def report(self, kit: Kit) -> dict[str, Any]:
        return {"board": self.board}
