"""Pruning a trained network to a FLOPs budget (``nas-kd prune``, ``nas_kd.prune``): the other way to a small
student, which every searched student must beat at equal cost.

A criterion of :data:`nas_kd.pruning.PRUNERS` ranks the channels; Torch-Pruning's dependency graph removes them with
the channels coupled to them and leaves a smaller dense network. The share of channels removed is bisected until
the network's FLOPs (the project's fvcore count) are at most the budget. The pruned network is saved as a directory:
``pruned.json`` (the model it was cut from, as ``teacher.model`` / ``teacher.kwargs`` name it, and every pruned
layer's new shape) and ``weights.pt``; :func:`load_pruned` rebuilds it without unpickling anything.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas_kd.checkpoint import load_checkpoint, model_state, save_checkpoint
from nas_kd.errors import BudgetError, UserError
from nas_kd.flops import count_flops, count_params
from nas_kd.pruning import Pruner

PRUNED_FILE = "pruned.json"
BISECTIONS = 10  # share of channels removed, to 1 / 1024 of its range


def prune_to_budget(model: nn.Module, input_shape: tuple[int, ...], pruner: Pruner, budget_mflops: float, *,
                    batches: list[tuple[torch.Tensor, torch.Tensor]] = (), steps: int = BISECTIONS
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """``model`` pruned by ``pruner`` to at most ``budget_mflops`` (:meth:`~nas_kd.pruning.Pruner.to_budget`: the
    least pruning that fits, by bisection of the share of channels removed); returns the pruned copy and a report
    (the share, MFLOPs and parameters before and after, what the pruner adds). ``batches``: training batches, for a
    criterion that reads data. A budget the most pruned network (:meth:`~nas_kd.pruning.Pruner.max_ratio`) does not
    meet is refused, naming it. ``steps``: bisection steps."""
    if pruner.data_batches() and not batches:
        raise UserError(f"pruner {type(pruner).__name__.lower()} reads training batches: none were given")
    shape = (1, *input_shape)
    before = count_flops(model, shape) / 1e6
    if budget_mflops >= before:
        raise BudgetError(f"budget {budget_mflops:g} MFLOPs: the network already has {before:.3f}, nothing to prune")
    best, found = pruner.to_budget(model, input_shape, budget_mflops, list(batches), steps)
    report = {**found, "mflops_before": before, "mflops": count_flops(best, shape) / 1e6,
              "params_before": count_params(model), "params": count_params(best), "budget_mflops": budget_mflops}
    return best, report


def _shapes(model: nn.Module) -> dict[str, dict[str, int]]:
    """Every convolution's, BatchNorm's and linear layer's channel counts (what pruning changes)."""
    out: dict[str, dict[str, int]] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            out[name] = {"in": m.in_channels, "out": m.out_channels, "groups": m.groups, "kernel": list(m.kernel_size),
                         "stride": list(m.stride), "padding": list(m.padding), "dilation": list(m.dilation),
                         "bias": m.bias is not None}
        elif isinstance(m, nn.BatchNorm2d):
            out[name] = {"features": m.num_features}
        elif isinstance(m, nn.Linear):
            out[name] = {"in": m.in_features, "out": m.out_features}
    return out


def _resized(m: nn.Module, s: dict[str, Any]) -> nn.Module:
    if "kernel" in s:  # a convolution, all its geometry recorded (it may replace another layer: a factorisation)
        return nn.Conv2d(s["in"], s["out"], tuple(s["kernel"]), tuple(s["stride"]), tuple(s["padding"]),
                         tuple(s["dilation"]), s["groups"], s["bias"])
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
    for name in meta["shapes"]:  # a layer replaced by a sequence of convolutions (a factorisation) becomes one
        parent, _, leaf = name.rpartition(".")
        if leaf.isdigit() and isinstance(modules.get(parent), nn.Conv2d):
            count = 1 + max(int(n.rpartition(".")[2]) for n in meta["shapes"] if n.rpartition(".")[0] == parent)
            outer, _, last = parent.rpartition(".")
            setattr(net.get_submodule(outer) if outer else net, last, nn.Sequential(*[nn.Identity()] * count))
            modules = dict(net.named_modules())
    for name, shape in meta["shapes"].items():
        parent, _, leaf = name.rpartition(".")
        holder = net.get_submodule(parent) if parent else net
        setattr(holder, leaf, _resized(getattr(holder, leaf), shape))
    net.load_state_dict(model_state(load_checkpoint(directory / "weights.pt")))
    return net.eval()


def is_pruned(directory: str | Path) -> bool:
    return (Path(directory) / PRUNED_FILE).exists()


def load_network(directory: str | Path) -> nn.Module:
    """A saved student of either kind (eval mode): a pruned network (``pruned.json``, :func:`load_pruned`) or a
    subnet (``arch.json``, :func:`nas_kd.export.load_subnet`)."""
    from nas_kd.export import load_subnet

    return load_pruned(directory) if is_pruned(directory) else load_subnet(directory)
