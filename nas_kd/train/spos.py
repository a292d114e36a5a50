"""``spos``: Single Path One-Shot (Guo et al., ECCV 2020): one uniformly sampled path per step.

Each step draws one subnet with ``sampler`` (uniform by default, as in the paper) and trains only it:
on the hard labels (``soft_labels: none``, the paper's setting), or on the hard labels plus the
``distill`` terms from soft labels (``teacher``: the fixed teacher's logits; ``inplace``: the max subnet's
logits, computed without gradient, so the max subnet is not trained by them; ``mix``: both, weighted by
``mix_weight``). No path gets more updates than another in expectation, which is what makes SPOS's
weights a fair ranking of paths.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nas_kd.train.registry import SUPERNET_TRAINERS
from nas_kd.train.supernet import Kit, WeightSharing


@SUPERNET_TRAINERS.register("spos")
@dataclass(kw_only=True)
class SinglePath(WeightSharing):
    """One uniformly sampled path per step (SPOS)."""

    def step(self, kit: Kit, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        arch = kit.sampler.sample(kit.rng(), 1)[0]
        t_logits = kit.teacher_logits(x)
        inplace = None
        if self.soft_labels in ("inplace", "mix"):
            with torch.no_grad():
                inplace = kit.forward(kit.space.max_arch(), x)
        logits = kit.forward(arch, x)
        loss = kit.hard_loss(logits, y)
        if self.soft_labels != "none":
            loss = loss + kit.soft_loss(logits, y, t_logits, inplace)
        loss.backward()
        return {"loss": loss.item() * len(y), "acc": (logits.argmax(1) == y).sum().item(), "count": len(y)}
