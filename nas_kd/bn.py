"""BatchNorm recalibration: per-subnet statistics before any evaluation of a weight-sharing subnet."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, num_batches: int = 20, channels_last: bool = False) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them on ``num_batches`` batches.

    Statistics are the exact average over the batches (momentum ``None``), computed in train
    mode without gradients; momenta are restored and the model is left in eval mode.
    ``batches`` yields tensors or ``(x, y)`` pairs.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    device = next(model.parameters()).device
    model.train()
    try:
        for i, batch in enumerate(batches):
            if i >= num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            x = x.to(device)
            model(x.contiguous(memory_format=torch.channels_last) if channels_last else x)
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        model.eval()
    return model
