"""Export a subnet of a supernet as a standalone model, save it as a directory, load it back.

A saved subnet is a directory with ``arch.json`` (space, arch, spec, FLOPs, params),
``weights.pt`` (state dict) and optionally ``model.ts`` (TorchScript) and ``model.onnx`` (checked with
onnxruntime). Loading needs only
:mod:`nas_kd.subnet`, not the supernet or the search space.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nas_kd.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from nas_kd.provenance import write_json_atomic
from nas_kd.subnet import StaticNet, spec_cost
from nas_kd.supernet import Supernet


@torch.no_grad()
def export_subnet(supernet: Supernet, arch: dict[str, Any]) -> StaticNet:
    """A :class:`StaticNet` of plain ``torch.nn`` layers holding ``arch``'s weights sliced from ``supernet``.

    In eval mode its outputs equal the supernet's with ``arch`` active. BatchNorm statistics
    are copied as they are: recalibrate them for ``arch`` first (:func:`nas_kd.bn.recalibrate_bn`).
    """
    with supernet.set_arch(arch):
        spec = supernet.active_spec
        net = StaticNet(spec)
        supernet.stem.export_to(net.stem, spec["input_shape"][0], spec["stem"]["out"], spec["stem"]["kernel"])
        for name, blocks in zip(net.stage_names, spec["stages"]):
            for dyn, static, b in zip(getattr(supernet, name).blocks, getattr(net, name), blocks):
                dyn.export_to(static, b)
        linear = supernet.head[-1]
        net.head[-1].weight.copy_(linear.weight[:, : spec["head"]["in"]])
        net.head[-1].bias.copy_(linear.bias)
    net.arch = supernet.space.validate(arch)
    net.space_name = supernet.space.name
    return net.train(supernet.training)


def save_subnet(net: StaticNet, directory: str | Path, *, torchscript: bool = False, onnx: bool = False,
                **info: Any) -> Path:
    """Write ``weights.pt`` and optionally ``model.ts`` and ``model.onnx`` (verified with onnxruntime; its report
    goes into ``arch.json``) into ``directory``, then ``arch.json`` last and atomically: a directory whose
    ``arch.json`` exists is complete (a process killed before it leaves a directory that is redone, never trusted)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "arch.json").unlink(missing_ok=True)  # overwritten: not complete until written again
    flops, params = spec_cost(net.spec)
    meta = {"space": getattr(net, "space_name", None), "arch": getattr(net, "arch", None), "spec": net.spec,
            "flops": flops, "params": params, **info}
    save_checkpoint({"model": net.state_dict()}, directory / "weights.pt")
    if torchscript:
        shape = (1, *net.input_shape)
        was_training = net.training
        traced = torch.jit.trace(net.eval(), torch.zeros(shape))
        net.train(was_training)
        traced.save(str(directory / "model.ts"))
    if onnx:
        from nas_kd.onnx_export import export_onnx

        was_training = net.training
        meta |= export_onnx(net.eval(), directory / "model.onnx", net.input_shape)
        net.train(was_training)
    write_json_atomic(directory / "arch.json", meta)
    return directory


def load_subnet(directory: str | Path) -> StaticNet:
    """Rebuild a saved subnet (eval mode) from ``arch.json`` and ``weights.pt``."""
    directory = Path(directory)
    try:
        meta = json.loads((directory / "arch.json").read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no arch.json (not a saved subnet)") from None
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{directory / 'arch.json'}: not valid JSON ({e})") from None
    net = StaticNet(meta["spec"])
    try:
        net.load_state_dict(load_checkpoint(directory / "weights.pt")["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{directory / 'weights.pt'}: weights do not fit arch.json's spec: {e}") from None
    net.arch, net.space_name = meta.get("arch"), meta.get("space")
    return net.eval()

