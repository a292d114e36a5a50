"""Pruning a trained network to a FLOPs budget (``nas-kd prune``, ``nas_kd.prune``): the other way to a small
student, which every searched student must beat at equal cost.

A criterion of :data:`nas_kd.pruning.PRUNERS` ranks the channels; Torch-Pruning's dependency graph removes them with
the channels coupled to them and leaves a smaller dense network. The share of channels removed is bisected until
the network's FLOPs (the project's fvcore count) are at most the budget. The pruned network is saved as a directory:
``pruned.json`` (the model it was cut from, as ``teacher.model`` / ``teacher.kwargs`` name it, and every pruned
layer's new shape) and ``weights.pt``; :func:`load_pruned` rebuilds it without unpickling anything.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.checkpoint import load_checkpoint, model_state, save_checkpoint
from nas_kd.errors import BudgetError, UserError
from nas_kd.flops import count_flops, count_params
from nas_kd.pruning import Pruner

PRUNED_FILE = "pruned.json"
BISECTIONS = 10  # share of channels removed, to 1 / 1024 of its range


def max_ratio(model: nn.Module) -> float:
    """The largest share of channels that can be removed from every layer while each keeps one and a half of its
    narrowest convolution's share (Torch-Pruning keeps floor(n x (1 - share)) of n channels and leaves a layer
    whole when that is 0, so above this share the FLOPs would rise again, not fall)."""
    narrowest = min(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))
    return max(0.0, 1 - 1.5 / narrowest)


def _prune_copy(model: nn.Module, input_shape: tuple[int, ...], pruner: Pruner, ratio: float,
                batches: list[tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """A copy of ``model`` with ``ratio`` of its channels removed by ``pruner`` (the classifier's outputs kept)."""
    import torch_pruning as tp

    net = copy.deepcopy(model).eval()
    heads = [m for m in net.modules() if isinstance(m, nn.Linear)][-1:]
    importance = pruner.importance()
    example = torch.zeros(2, *input_shape)
    engine = tp.pruner.MetaPruner(net, example, importance=importance, pruning_ratio=ratio, ignored_layers=heads,
                                  global_pruning=pruner.global_pruning, max_pruning_ratio=max_ratio(model))
    with pruner.observe(net, importance, batches, F.cross_entropy):
        engine.step()
    return net.eval()


def prune_to_budget(model: nn.Module, input_shape: tuple[int, ...], pruner: Pruner, budget_mflops: float, *,
                    batches: list[tuple[torch.Tensor, torch.Tensor]] = (), steps: int = BISECTIONS
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` pruned by ``pruner`` to at most ``budget_mflops`` (the least pruning that fits, by bisection of the
    share of channels removed); returns the pruned copy and a report (the share, MFLOPs and parameters before and
    after). ``batches``: training batches, for a criterion that reads data. A budget the most pruned network
    (:func:`max_ratio`) does not meet is refused, naming it. ``steps``: bisection steps."""
    if pruner.needs_data and not batches:
        raise UserError(f"pruner {type(pruner).__name__.lower()} ranks channels on training batches: none were given")
    shape = (1, *input_shape)
    before = count_flops(model, shape) / 1e6
    if budget_mflops >= before:
        raise BudgetError(f"budget {budget_mflops:g} MFLOPs: the network already has {before:.3f}, nothing to prune")
    top = max_ratio(model)
    smallest = count_flops(_prune_copy(model, input_shape, pruner, top, list(batches)), shape) / 1e6
    if smallest > budget_mflops:
        raise BudgetError(f"budget {budget_mflops:g} MFLOPs: pruning {top:.0%} of every layer's channels (the most "
                          f"that leaves each layer a channel) leaves {smallest:.3f} MFLOPs; raise the budget to at "
                          f"least {smallest:.3f}")
    lo, hi, best = 0.0, top, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        net = _prune_copy(model, input_shape, pruner, mid, list(batches))
        if count_flops(net, shape) / 1e6 <= budget_mflops:
            hi, best = mid, net
        else:
            lo = mid
    if best is None:
        hi, best = top, _prune_copy(model, input_shape, pruner, top, list(batches))
    report = {"ratio": hi, "ratio_over_budget": lo, "mflops_before": before, "mflops": count_flops(best, shape) / 1e6,
              "params_before": count_params(model), "params": count_params(best), "budget_mflops": budget_mflops}
    return best, report


def _shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Every convolution's, BatchNorm's and linear layer's channel counts (what pruning changes)."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups}
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"features": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {"in": m.in_features, "out": m.out_features}
    return out


def _resized(m: nn.Module, s: dict[str, int]) -> nn.Module:
    if isinstance(m, nn.Conv2d):
        return nn.Conv2d(s["in"], s["out"], m.kernel_size, m.stride, m.padding, m.dilation, s["groups"],
                         m.bias is not None, m.padding_mode)
    if isinstance(m, nn.BatchNorm2d):
        return nn.BatchNorm2d(s["features"], m.eps, m.momentum, m.affine, m.track_running_stats)
    return nn.Linear(s["in"], s["out"], m.bias is not None)


def save_pruned(model: nn.Module, directory: str | Path, origin: dict[str, Any], report: dict[str, Any]) -> Path:
    """``directory/pruned.json`` (``origin``: the model it was cut from, ``{model, kwargs, num_classes,
    in_channels}``; every layer's shape; ``report``) and ``weights.pt``; the JSON last, so its presence says the
    directory is complete."""
    from nas_kd.provenance import write_json_atomic

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": model.state_dict()}, directory / "weights.pt")
    write_json_atomic(directory / PRUNED_FILE, {"origin": origin, "shapes": _shapes(model), **report})
    return directory


def load_pruned(directory: str | Path) -> nn.Module:
    """The network saved by :func:`save_pruned`: its origin rebuilt, every layer resized as recorded, the weights
    loaded (weights only; nothing is unpickled)."""
    from nas_kd.config import TeacherConfig
    from nas_kd.teacher import build_model

    directory = Path(directory)
    try:
        meta = json.loads((directory / PRUNED_FILE).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{directory}: not a pruned network of nas-kd prune ({e})") from None
    o = meta["origin"]
    net = build_model(TeacherConfig(model=o["model"], kwargs=o["kwargs"]), o["num_classes"], o["in_channels"])
    modules = dict(net.named_modules())
    for name, shape in meta["shapes"].items():
        parent, _, leaf = name.rpartition(".")
        setattr(modules[parent] if parent else net, leaf, _resized(modules[name], shape))
    net.load_state_dict(model_state(load_checkpoint(directory / "weights.pt")))
    return net.eval()


def is_pruned(directory: str | Path) -> bool:
    return (Path(directory) / PRUNED_FILE).exists()


def load_network(directory: str | Path) -> nn.Module:
    """A saved student of either kind (eval mode): a pruned network (``pruned.json``, :func:`load_pruned`) or a
    subnet (``arch.json``, :func:`nas_kd.export.load_subnet`)."""
    from nas_kd.export import load_subnet

    return load_pruned(directory) if is_pruned(directory) else load_subnet(directory)


def describe(directory: str | Path) -> dict[str, Any]:
    """What a pruned directory records (for a student's description)."""
    return json.loads((Path(directory) / PRUNED_FILE).read_text())

