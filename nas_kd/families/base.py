"""What a block family is: its static block, its elastic (weight-sharing) twin and its exact cost."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from nas_kd.registry import Registry

Block = dict[str, Any]  # one spec block: {"in", "out", "stride", "kernel", "mid", "shortcut"}
Size = tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class BlockFamily:
    """``static(block)`` builds the exported block, ``dynamic(max_block, kernel_sizes, kernel_transform)``
    the elastic one a supernet holds (``forward(x, block)``, ``export_to(static, block)``, and ``inner_channels()`` /
    ``outer_channels()``: the layers writing its inner / output channels and the weights reading its inner / input
    channels, which progressive shrinking re-sorts together), and
    ``cost(block, (h, w))`` returns ``(flops, params, (h_out, w_out))`` exactly as fvcore and
    :func:`nas_kd.flops.count_params` count the static block at that input size."""

    static: Callable[[Block], nn.Module]
    dynamic: Callable[..., nn.Module]
    cost: Callable[[Block, Size], tuple[int, int, Size]]


FAMILIES: Registry = Registry("block family")
