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

    def cut(self, model: nn.Module, input_shape: tuple[int, ...], ratio: float,
            batches: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
        """A copy of ``model`` with ``ratio`` of its channels removed (the classifier's outputs kept), through
        Torch-Pruning's dependency graph ranked by :meth:`importance`; a method that shrinks otherwise (a
        factorisation) overrides this, ``ratio`` then the share of what it keeps that it removes."""
        import copy

        import torch_pruning as tp

        net = copy.deepcopy(model).eval()
        heads = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
        importance = self.importance()
        engine = tp.pruner.MetaPruner(net, torch.zeros(2, *input_shape), importance=importance, pruning_ratio=ratio,
                                      ignored_layers=heads, global_pruning=self.global_pruning,
                                      max_pruning_ratio=max_ratio(model))
        with self.observe(net, importance, batches, torch.nn.functional.cross_entropy):
            engine.step()
        return net.eval()

    def max_ratio(self, model: nn.Module) -> float:
        """The largest ``ratio`` :meth:`cut` takes for ``model``."""
        return max_ratio(model)

    @contextmanager
    def observe(self, model: nn.Module, importance: Any, batches: list[tuple[torch.Tensor, torch.Tensor]],
                loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Iterator[None]:
        yield

    def spec(self) -> dict[str, Any]:
        """Its options, as recorded with a pruned model."""
        import inspect

        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}


PRUNERS: Registry[Pruner] = Registry("pruner")


def max_ratio(model: nn.Module) -> float:
    """The largest share of channels that can be removed from every layer while each keeps one and a half of its
    narrowest convolution's share (Torch-Pruning keeps floor(n x (1 - share)) of n channels and leaves a layer
    whole when that is 0, so above this share the FLOPs would rise again, not fall)."""
    narrowest = min(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    return max(0.0, 1 - 1.5 / narrowest)

