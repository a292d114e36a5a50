"""FLOPs and parameter counts. Ground truth is fvcore.

Convention (everywhere in nas_kd): one fused multiply-add counts as one FLOP, as fvcore
counts it, and BatchNorm counts too (2 per element in eval mode), so totals run 3-4% above
papers' conv+linear MACs. Counts are for a batch of one. The exact cost of a network spec,
for any input size, is :func:`nas_kd.subnet.spec_cost`, built from :func:`conv_bn_cost`.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """fvcore's total for one forward pass of ``model`` (in eval mode) on zeros of ``input_shape`` (N, C, H, W)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            return int(analysis.total())
    finally:
        model.train(was_training)


def teacher_fraction_mflops(teacher: nn.Module, input_shape: tuple[int, ...], fraction: float) -> float:
    """The one rule for a budget given as a fraction of the teacher (``pipeline.budget_fraction_of_teacher``,
    ``budget_fraction=`` of the API): ``fraction`` x the teacher's FLOPs (:func:`count_flops`, batch of one of
    ``input_shape`` = (C, H, W)), in MFLOPs. ``fraction`` lies in (0, 1] (the range is the caller's to check)."""
    return fraction * count_flops(teacher, (1, *input_shape)) / 1e6


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm affine included; running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters())


def conv_out(size: int, kernel: int, stride: int) -> int:
    """Output length along one spatial axis of a conv with 'same' padding ``kernel // 2``."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def conv_bn_cost(cin: int, cout: int, kernel: int, stride: int, size: tuple[int, int],
                 groups: int = 1) -> tuple[int, int, tuple[int, int]]:
    """(flops, params, (h, w) out) of conv + BatchNorm at input ``size`` = (h, w), priced as fvcore
    does (multiply-adds; BatchNorm 2 per output element)."""
    h, w = conv_out(size[0], kernel, stride), conv_out(size[1], kernel, stride)
    weights = cout * (cin // groups) * kernel * kernel
    return weights * h * w + 2 * cout * h * w, weights + 2 * cout, (h, w)


def prefix_flops(model: nn.Module, input_shape: tuple[int, ...], names: list[str]) -> list[int]:
    """For each named submodule, fvcore's FLOPs of ``model``'s forward pass up to that submodule's output: the
    counts of the leaf modules that ran before it returned (one pass on zeros of ``input_shape``, in eval mode)."""
    leaves = {n: m for n, m in model.named_modules() if not any(m.children())}
    order: list[str] = []
    marks: dict[str, int] = {}
    hooks = [m.register_forward_hook(lambda *_, n=n: order.append(n)) for n, m in leaves.items()]
    hooks += [model.get_submodule(n).register_forward_hook(lambda *_, n=n: marks.__setitem__(n, len(order)))
              for n in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_shape))
        for h in hooks:
            h.remove()
        with torch.no_grad():
            analysis = FlopCountAnalysis(model, torch.zeros(input_shape))
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            per_module = analysis.by_module()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return [int(sum(per_module.get(leaf, 0) for leaf in order[:marks[n]])) for n in names]
