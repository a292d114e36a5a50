"""``l1`` and ``l2``: filters ranked by the norm of their weights (Li et al., "Pruning Filters for Efficient
ConvNets", ICLR 2017: the L1 norm)."""
from __future__ import annotations

from typing import Any

import torch_pruning as tp

from nas_kd.pruning.base import PRUNERS, Pruner


@PRUNERS.register("l1")
class L1(Pruner):
    """Channels with the smallest L1 norm of their weights (summed over the coupled layers of their group) go
    first."""

    def importance(self) -> Any:
        return tp.importance.MagnitudeImportance(p=1)


@PRUNERS.register("l2")
class L2(Pruner):
    """Channels with the smallest L2 norm of their weights go first."""

    def importance(self) -> Any:
        return tp.importance.MagnitudeImportance(p=2)
