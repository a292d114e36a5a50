"""``slim``: channels ranked by their BatchNorm scale (Liu et al., "Learning Efficient Convolutional Networks through
Network Slimming", ICCV 2017)."""
from __future__ import annotations

from typing import Any

import torch_pruning as tp

from nas_kd.pruning.base import PRUNERS, Pruner


@PRUNERS.register("slim")
class Slim(Pruner):
    """Channels whose BatchNorm scale (|gamma|) is smallest go first, ranked across layers (the paper's global
    threshold). Simplification, named: the paper first trains with an L1 penalty on the scales so that many become
    near zero; here the trained network's scales are ranked as they are."""

    def __init__(self, *, global_pruning: bool = True) -> None:
        super().__init__(global_pruning=global_pruning)

    def importance(self) -> Any:
        return tp.importance.BNScaleImportance()
