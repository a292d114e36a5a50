"""Top-1 accuracy and cross-entropy of any model on a data split."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.data import Split
from nas_kd.device import model_device, to_memory_format


@torch.no_grad()
def evaluate(
    model: Callable[[torch.Tensor], torch.Tensor],
    split: Split,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> dict[str, float]:
    """Top-1 accuracy (fraction) and mean cross-entropy of ``model`` on ``split``, in eval mode."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    correct, loss, n = 0, 0.0, len(split)
    device = model_device(model)
    for i in range(0, n, batch_size):
        x, y = split.x[i : i + batch_size].to(device), split.y[i : i + batch_size].to(device)
        logits = model(to_memory_format(x, channels_last)).float()
        loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    if was_training:
        model.train()
    return {"acc": correct / n, "loss": loss / n}
