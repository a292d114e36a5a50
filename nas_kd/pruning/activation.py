"""``activation``: channels ranked by how much they activate (the data-driven family of Hu et al.'s APoZ, "Network
Trimming", 2016: neurons that are mostly zero are removed)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
import torch_pruning as tp

from nas_kd.pruning.base import PRUNERS, Pruner
from nas_kd.typecheck import AtLeast1


@PRUNERS.register("activation", example={"batches": 1})
class Activation(Pruner):
    """A channel's importance is the mean magnitude of the activation it feeds the next layer on training batches
    (Torch-Pruning's activation importance; each layer keeps the statistics of the last of ``batches`` batches). APoZ
    counts zeros instead of averaging magnitudes; both remove the channels that rarely fire."""

    def __init__(self, *, batches: AtLeast1 = 1, global_pruning: bool = False) -> None:
        super().__init__(global_pruning=global_pruning)
        self.batches = int(batches)

    def data_batches(self) -> int:
        return self.batches

    def importance(self) -> Any:
        return tp.importance.ActivationImportance()

    @contextmanager
    def observe(self, model, importance, batches, loss) -> Iterator[None]:
        with importance.compute_importance(model), torch.no_grad():
            for x, _ in batches[: self.batches]:
                model(x)
        yield
