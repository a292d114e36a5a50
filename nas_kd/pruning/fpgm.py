"""``fpgm``: filter pruning via the geometric median (He et al., "Filter Pruning via Geometric Median for Deep
Convolutional Neural Networks Acceleration", CVPR 2019)."""
from __future__ import annotations

from typing import Any

import torch_pruning as tp

from nas_kd.pruning.base import PRUNERS, Pruner


@PRUNERS.register("fpgm")
class FPGM(Pruner):
    """The filters closest to the geometric median of their layer's filters (the most replaceable by the others)
    go first, whatever their norm."""

    def importance(self) -> Any:
        return tp.importance.FPGMImportance(p=2)
