"""Where models run: device choice, a model's device, autocast, memory layout."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from nas_kd.errors import UserError


def resolve_device(name: str) -> torch.device:
    """``auto``: the first CUDA device when present, else the CPU; ``cuda`` without CUDA is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"train.device {name!r}: CUDA is not available on this machine (use auto or cpu)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


def model_device(model: Any) -> torch.device:
    """Where ``model``'s parameters live (the CPU for a parameterless callable)."""
    params = model.parameters() if isinstance(model, nn.Module) else iter(())
    return next(params, torch.empty(0)).device


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """bfloat16 autocast on CUDA when ``enabled``; a disabled context on the CPU."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled and device.type == "cuda")


def to_memory_format(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NHWC memory layout when ``channels_last`` (much faster depthwise convs on CPU)."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x
