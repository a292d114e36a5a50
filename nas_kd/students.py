"""What ``nas-kd distill --student S`` trains: a space's arch, an exported subnet, or any model factory."""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

import search_spaces
from nas_kd.errors import UserError
from nas_kd.subnet import StaticNet, zero_init_residual


@dataclass
class Student:
    """A student to train: ``make(input_shape, num_classes)`` builds a fresh copy for data of that (C, H, W) (a new one per call, for
    mutual learning); ``describe`` goes into the run's ``final.json``; ``stages`` are its default stage
    names for feature methods (``None`` if unknown); ``exportable`` students are saved as subnets."""

    make: Callable[[tuple[int, int, int], int], nn.Module]
    describe: dict[str, Any]
    stages: list[str] | None
    exportable: bool


def stage_names(model: nn.Module) -> list[str] | None:
    """``stem`` plus ``stage1..K`` of a nas_kd network (static net or supernet), else ``None``."""
    names = getattr(model, "stage_names", None)
    return ["stem", *names] if names else None


def arch_student(space_name: str, arch: Any) -> Student:
    """A freshly initialised arch of a space (validated), built for the data's input shape and classes."""
    space = search_spaces.get(space_name)
    arch = space.validate(arch)

    def make(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        net = zero_init_residual(StaticNet(search_spaces.get(space_name, input_shape, num_classes).spec(arch)))
        net.arch, net.space_name = arch, space.name
        return net

    stages = ["stem", *[f"stage{i + 1}" for i in range(len(space.spec(arch)["stages"]))]]
    return Student(make, {"space": space.name, "arch": arch}, stages, True)


def model_student(model: nn.Module, describe: dict[str, Any]) -> Student:
    """An existing model, trained further in place (e.g. an exported subnet being fine-tuned); a second
    student (mutual learning) starts as a copy of it."""
    made: list[nn.Module] = []

    def make(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
        made.append(model if not made else copy.deepcopy(model))
        return made[-1]

    return Student(make, describe, stage_names(model), isinstance(model, StaticNet))


def read_arch_file(path: str | Path) -> tuple[str | None, dict]:
    """``(space or None, arch)`` from a JSON file holding an arch, or ``{"space": ..., "arch": ...}``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"arch {path}: not a readable JSON arch file ({e})") from None
    if isinstance(data, dict) and isinstance(data.get("arch"), dict):
        return data.get("space"), data["arch"]
    return None, data


def resolve_arch(space, arch: str | dict) -> dict[str, Any]:
    """``max``, ``min``, a JSON file (an arch, or ``{"arch": ...}``) or a dict, validated against ``space``."""
    if isinstance(arch, str) and arch in ("max", "min"):
        return space.max_arch() if arch == "max" else space.min_arch()
    if isinstance(arch, str):
        arch = read_arch_file(arch)[1]
    return space.validate(arch)


def resolve_student(spec: str, default_space: str) -> Student:
    """``space:max|min`` (or ``max|min`` of ``default_space``), an arch JSON file, an exported subnet
    directory (training starts from its weights), or a ``package.module:function`` factory called as
    ``function(num_classes=..., in_channels=...)``."""
    from nas_kd.export import load_subnet
    from nas_kd.teacher import resolve_factory

    head, _, tail = spec.partition(":")
    if spec in ("max", "min") or (head in search_spaces.available() and tail in ("max", "min")):
        space = search_spaces.get(default_space if spec in ("max", "min") else head)
        return arch_student(space.name, space.max_arch() if (tail or spec) == "max" else space.min_arch())
    path = Path(spec)
    if path.is_dir():
        net = load_subnet(path)
        return model_student(net.train(), {"space": net.space_name, "arch": net.arch, "initialised_from": str(path)})
    if path.suffix == ".json" or path.is_file():
        space, arch = read_arch_file(path)
        return arch_student(space or default_space, arch)
    if ":" in spec:
        factory = resolve_factory(spec, "--student")

        def make(input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
            return factory(num_classes=num_classes, in_channels=input_shape[0])

        return Student(make, {"model": spec}, None, False)
    raise UserError(f"--student {spec!r}: not space:max|min, an arch JSON file, a subnet directory or module:function "
                    f"(spaces: {', '.join(search_spaces.available())})")
