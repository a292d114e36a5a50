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


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Spatial output size of a conv with 'same' padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1) -> tuple[int, int, int]:
    """(flops, params, output size) of conv + BatchNorm, priced as fvcore does (BN: 2 per output element)."""
    out = conv_out(size, kernel, stride)
    weights = cout * (cin // groups) * kernel * kernel
    return weights * out * out + 2 * cout * out * out, weights + 2 * cout, out


def stem_cost(cin: int, cout: int, size: int, kernel: int = 3) -> tuple[int, int, int]:
    """(flops, params, output size) of a stride-1 conv + BatchNorm stem."""
    return _conv_bn(cin, cout, kernel, 1, size)


def block_cost(block: dict, size: int, family: str) -> tuple[int, int, int]:
    """(flops, params, output size) of one spec block at input resolution ``size``."""
    parts: list[tuple[int, int, int]]
    if family == "mbconv":
        parts = [_conv_bn(block["in"], block["mid"], 1, 1, size)]
        parts.append(_conv_bn(block["mid"], block["mid"], block["kernel"], block["stride"], size, groups=block["mid"]))
        parts.append(_conv_bn(block["mid"], block["out"], 1, 1, parts[-1][2]))
    else:
        parts = [_conv_bn(block["in"], block["mid"], block["kernel"], block["stride"], size)]
        parts.append(_conv_bn(block["mid"], block["out"], block["kernel"], 1, parts[-1][2]))
        if block["shortcut"] == "projection":
            parts.append(_conv_bn(block["in"], block["out"], 1, block["stride"], size))
    return sum(p[0] for p in parts), sum(p[1] for p in parts), parts[1][2]


def spec_cost(spec: dict) -> tuple[int, int]:
    """(flops, params) of the network a spec describes, equal to fvcore / ``count_params`` on it.

    FLOPs follow fvcore's conventions for a 1 x C x S x S input (S = ``spec["image_size"]``):
    convs and the linear layer count multiply-adds, BatchNorm 2 per element, average pooling
    1 per input element; ReLU and additions are free.
    """
    stem = spec["stem"]
    flops, params, size = _conv_bn(spec["in_channels"], stem["out"], stem["kernel"], stem["stride"], spec["image_size"])
    for blocks in spec["stages"]:
        for b in blocks:
            f, p, size = _block_cost_cached(tuple(b[k] for k in ("in", "out", "stride", "kernel", "mid", "shortcut")), size, spec["family"])
            flops, params = flops + f, params + p
    cin, classes = spec["head"]["in"], spec["num_classes"]
    return flops + cin * size * size + cin * classes, params + cin * classes + classes


_TABLE: dict[tuple, tuple[int, int, int]] = {}


def _block_cost_cached(key: tuple, size: int, family: str) -> tuple[int, int, int]:
    """The per-block cost table: each distinct (block, resolution, family) is priced once."""
    full = (key, size, family)
    if full not in _TABLE:
        _TABLE[full] = block_cost(dict(zip(("in", "out", "stride", "kernel", "mid", "shortcut"), key)), size, family)
    return _TABLE[full]
