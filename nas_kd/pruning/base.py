"""What every pruning criterion shares: the registry and the hooks a criterion that reads data uses.

A pruner is a criterion for which channels of a trained network to remove, applied by Torch-Pruning's dependency
graph (coupled channels, e.g. across a residual sum, go together; the result is a smaller dense network). NNI's
pruners were tried first: their masks are computed, but NNI 3.0's ``ModelSpeedup`` fails to trace these networks
next to the pinned torch (``concrete_trace``: ``AttributeError: 'NoneType' object has no attribute 'startswith'``),
so nothing becomes dense; Torch-Pruning is the maintained alternative the project names.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, ClassVar, Iterator

import torch
import torch.nn as nn

from nas_kd.registry import Registry


class Pruner:
    """A pruning criterion (registered in :data:`PRUNERS`, one file each). :meth:`importance` gives Torch-Pruning's
    importance object; :meth:`observe` runs what it must see of the data before channels are ranked (nothing by
    default; ``needs_data``: it reads ``batches``). ``global_pruning``: rank channels across layers instead of
    removing the same share from every layer."""

    needs_data: ClassVar[bool] = False

    def __init__(self, *, global_pruning: bool = False) -> None:
        self.global_pruning = bool(global_pruning)

    def importance(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    @contextmanager
    def observe(self, model: nn.Module, importance: Any, batches: list[tuple[torch.Tensor, torch.Tensor]],
                loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Iterator[None]:
        yield

    def spec(self) -> dict[str, Any]:
        """Its options, as recorded with a pruned model."""
        import inspect

        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


PRUNERS: Registry[Pruner] = Registry("pruner")
