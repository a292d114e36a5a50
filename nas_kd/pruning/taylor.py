"""``taylor``: first-order Taylor importance (Molchanov et al., "Importance Estimation for Neural Network Pruning",
CVPR 2019)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch_pruning as tp

from nas_kd.pruning.base import PRUNERS, Pruner
from nas_kd.typecheck import AtLeast1


@PRUNERS.register("taylor", example={"batches": 1})
class Taylor(Pruner):
    """A channel's importance is the loss change its removal would cause to first order, |weight x gradient| summed
    over its group, the gradient of the training loss accumulated over ``batches`` training batches."""

    def __init__(self, *, batches: AtLeast1 = 4, global_pruning: bool = False) -> None:
        super().__init__(global_pruning=global_pruning)
        self.batches = int(batches)

    def data_batches(self) -> int:
        return self.batches

    def importance(self) -> Any:
        return tp.importance.TaylorImportance()

    @contextmanager
    def observe(self, model, importance, batches, loss) -> Iterator[None]:
        model.zero_grad()
        for x, y in batches[: self.batches]:
            loss(model(x), y).backward()
        yield
        model.zero_grad()
