"""``specialist_ensemble``: a generalist and its specialists predicting together (Hinton, Vinyals & Dean, 2015,
section 5), the teacher ``nas-kd specialists`` builds (:mod:`nas_kd.specialists`)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.models.registry import MODELS


def collapse(probs: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """A distribution over all classes as one over ``classes`` plus a dustbin (the rest of the mass)."""
    inside = probs[:, classes]
    return torch.cat([inside, (1 - inside.sum(1, keepdim=True)).clamp_min(0)], dim=1)


@MODELS.register("specialist_ensemble", example={"generalist": {"model": "resnet_fmnist", "kwargs": {"widths": [8, 8, 8, 8]}},
                                                "clusters": [[0, 1]], "steps": 2})
class SpecialistEnsemble(nn.Module):
    """The generalist (``generalist``: ``{model, kwargs}``, a registered model) and one specialist per cluster of classes
    (the generalist's architecture with a head over the cluster plus a dustbin). Per input, the full distribution
    q minimises KL(p_g || q) + sum over active specialists of KL(p_m || collapsed q), a specialist being active
    when its classes hold the generalist's most probable class: ``steps`` gradient steps (``lr``) on q's logits,
    from the generalist's."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, generalist: dict[str, Any],
                 clusters: list[list[int]], steps: int = 25, lr: float = 0.5) -> None:
        super().__init__()
        factory, kwargs = MODELS.get(generalist["model"]), dict(generalist.get("kwargs", {}))
        self.clusters, self.steps, self.lr = [list(c) for c in clusters], steps, lr
        self.generalist = factory(num_classes=num_classes, in_channels=in_channels, **kwargs)
        self.specialists = nn.ModuleList(factory(num_classes=len(c) + 1, in_channels=in_channels, **kwargs)
                                         for c in self.clusters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p_g = torch.softmax(self.generalist(x).float(), 1)
        top = p_g.argmax(1)
        experts = [(c, torch.softmax(s(x).float(), 1)) for c, s in zip(self.clusters, self.specialists)]
        z = p_g.clamp_min(1e-12).log().detach()
        with torch.enable_grad():
            z = z.clone().requires_grad_(True)
            for _ in range(self.steps):
                log_q = F.log_softmax(z, 1)
                loss = F.kl_div(log_q, p_g, reduction="none").sum(1)
                for c, p_m in experts:
                    active = torch.isin(top, torch.tensor(c, device=x.device)).float()
                    q_m = collapse(log_q.exp(), c).clamp_min(1e-12).log()
                    loss = loss + active * F.kl_div(q_m, p_m, reduction="none").sum(1)
                (grad,) = torch.autograd.grad(loss.sum(), z)
                z = (z - self.lr * grad).detach().requires_grad_(True)
        return z.detach()
