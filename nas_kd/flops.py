"""FLOPs and parameter counts. Ground truth is fvcore.

Convention (everywhere in nas_kd): one fused multiply-add counts as one FLOP, as fvcore
counts it, and BatchNorm counts too (2 per element in eval mode), so totals run 3-4% above
papers' conv+linear MACs. Counts are for a batch of one.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis


def count_flops(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> int:
    """fvcore's total for one forward pass of ``model`` (in eval mode) on zeros of ``input_shape``."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm affine included; running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())
