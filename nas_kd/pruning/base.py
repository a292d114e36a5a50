"""What every pruning criterion shares: the registry and the hooks a criterion that reads data uses.

A pruner is a criterion for which channels of a trained network to remove, applied by Torch-Pruning's dependency
graph (coupled channels, e.g. across a residual sum, go together; the result is a smaller dense network). NNI's
pruners were tried first: their masks are computed, but NNI 3.0's ``ModelSpeedup`` fails to trace these networks
next to the pinned torch (``concrete_trace``: ``AttributeError: 'NoneType' object has no attribute 'startswith'``),
so nothing becomes dense; Torch-Pruning is the maintained alternative the project names.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import torch
import torch.nn as nn

from nas_kd.errors import BudgetError
from nas_kd.flops import count_flops
from nas_kd.registry import Registry


class Pruner:
    """A pruning criterion (registered in :data:`PRUNERS`, one file each). :meth:`importance` gives Torch-Pruning's
    importance object; :meth:`observe` runs what it must see of the data before channels are ranked (nothing by
    default; :meth:`data_batches`: how many training batches it reads). ``global_pruning``: rank channels across
    layers instead of removing the same share from every layer."""

    def __init__(self, *, global_pruning: bool = False) -> None:
        self.global_pruning = bool(global_pruning)

    def importance(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def data_batches(self) -> int:
        """How many training batches :meth:`cut` reads (0: none; a criterion that reads data overrides this)."""
        return 0

    def cut(self, model: nn.Module, input_shape: tuple[int, ...], ratio: float,
            batches: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
        """A copy of ``model`` with ``ratio`` of its channels removed (the classifier's outputs kept), through
        Torch-Pruning's dependency graph ranked by :meth:`importance`; a method that shrinks otherwise (a
        factorisation) overrides this, ``ratio`` then the share of what it keeps that it removes."""
        net = copy.deepcopy(model).eval()
        importance = self.importance()
        with self.observe(net, importance, batches, torch.nn.functional.cross_entropy):
            remove_channels(net, input_shape, ratio, importance, global_pruning=self.global_pruning)
        return net.eval()

    def to_budget(self, model: nn.Module, input_shape: tuple[int, ...], budget_mflops: float,
                  batches: list[tuple[torch.Tensor, torch.Tensor]], steps: int) -> tuple[nn.Module, dict[str, Any]]:
        """``model`` cut to at most ``budget_mflops`` with the least ``ratio`` that fits, bisected in ``steps`` steps
        (:meth:`cut`); returns the cut copy and ``{ratio, ratio_over_budget}`` (the bisection's bounds). A budget the
        most this pruner cuts does not meet is refused, naming the least it reaches."""
        def mflops(net: nn.Module) -> float:
            return count_flops(net, (1, *input_shape)) / 1e6

        top = self.max_ratio(model)
        smallest = mflops(self.cut(model, input_shape, top, batches))
        if smallest > budget_mflops:
            raise BudgetError(f"budget {budget_mflops:g} MFLOPs: the most this pruner cuts (a share of {top:.0%}) "
                              f"leaves {smallest:.3f} MFLOPs; raise the budget to at least {smallest:.3f}")
        lo, hi, best = 0.0, top, None
        for _ in range(steps):
            mid = (lo + hi) / 2
            net = self.cut(model, input_shape, mid, batches)
            if mflops(net) <= budget_mflops:
                hi, best = mid, net
            else:
                lo = mid
        if best is None:
            hi, best = top, self.cut(model, input_shape, top, batches)
        return best, {"ratio": hi, "ratio_over_budget": lo}

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



def remove_channels(net: nn.Module, input_shape: tuple[int, ...], ratio: float, importance: Any, *,
                    global_pruning: bool = False, twin: nn.Module | None = None) -> None:
    """Removes ``ratio`` of ``net``'s channels in place through Torch-Pruning's dependency graph, ranked by
    ``importance`` (the classifier's outputs kept, no layer cut past :func:`max_ratio`). ``twin``: a network of the
    same structure (other weights) that loses the same channels, so a ranking made on one set of weights can be
    applied to another."""
    import torch_pruning as tp

    example = torch.zeros(2, *input_shape)
    heads = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    engine = tp.pruner.MetaPruner(net, example, importance=importance, pruning_ratio=ratio, ignored_layers=heads,
                                  global_pruning=global_pruning, max_pruning_ratio=max_ratio(net))
    if twin is not None:
        graph = tp.DependencyGraph().build_dependency(twin, example)
        names = {m: n for n, m in net.named_modules()}
        twins = dict(twin.named_modules())
    for group in engine.step(interactive=True):
        if twin is not None:  # the same channels of the same layer, before the group changes the indices
            root = group[0]
            same = graph.get_pruning_group(twins[names[root.dep.target.module]], root.dep.handler,
                                           [int(i) for i in root.idxs])
        group.prune()
        if twin is not None:
            same.prune()
