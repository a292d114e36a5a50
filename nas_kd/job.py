"""What every trainer and search works with besides its own method, as objects: the data, the teachers, the seed,
the optimisation schedule (``train`` section), how batches are drawn (``data`` section's batching fields) and where
the run writes (:class:`RunSpec`).

The recipe layer (:mod:`nas_kd.recipes`) builds a :class:`Job` from a recipe; the Python API (:mod:`nas_kd.api`)
from objects in memory. Library functions take a job (or the one object they need), never a whole recipe.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch.nn as nn

from nas_kd.config import DataConfig, TrainConfig
from nas_kd.data import DataBundle
from nas_kd.errors import UserError


def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every parameter frozen (how a teacher is used)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass
class Teacher:
    """One teacher: how to get its module (called once, on first use: a recipe's teacher that no method needs is
    never loaded), the module names of its stages (for blockwise supervision and feature distillers), and what it
    was loaded from (recorded with the results; ``None``: a module given in memory)."""

    load: Callable[[], nn.Module]
    stages: list[str] = field(default_factory=list)
    source: str | None = None
    _module: nn.Module | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, module: nn.Module, stages: list[str] | tuple[str, ...] = (), source: str | None = None) -> "Teacher":
        """A teacher from a module in memory (frozen, in eval mode)."""
        if not isinstance(module, nn.Module):
            raise UserError(f"teacher: expected a torch.nn.Module, got {type(module).__name__}")
        return cls(lambda: module, list(stages), source)

    def module(self) -> nn.Module:
        """The frozen teacher (loaded on the first call)."""
        if self._module is None:
            self._module = freeze(self.load())
        return self._module


def apply_changes(config: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with dotted-key ``changes`` (``{"train.epochs": 3}``) set, sections made as needed."""
    out = copy.deepcopy(config)
    for key, value in changes.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


@dataclass(frozen=True)
class RunSpec:
    """A run directory: its ``path``, the ``config`` that defines the run (written to ``config.yaml`` and compared
    when a run is continued: a recipe's resolved form from the command line, the call's options from Python) and
    whether its metrics also go to TensorBoard."""

    path: Path
    config: dict[str, Any] = field(default_factory=dict)
    tensorboard: bool = False

    def child(self, name: str, changes: dict[str, Any] | None = None) -> "RunSpec":
        """The run directory ``path/name``, with the config's dotted-key ``changes`` applied."""
        return self.at(self.path / name, changes)

    def at(self, path: str | Path, changes: dict[str, Any] | None = None) -> "RunSpec":
        """The same run config (with ``changes``) written to another directory; a config with a ``run`` section (a
        recipe's) has its ``run.out_dir`` and ``run.name`` follow the directory."""
        path = Path(path)
        where = {"run.out_dir": str(path.parent), "run.name": path.name} if "run" in self.config else {}
        return RunSpec(path, apply_changes(self.config, {**where, **(changes or {})}), self.tensorboard)


@dataclass(frozen=True)
class Job:
    """The objects a training or scoring run needs besides its method. ``batching`` is the ``data`` section: its
    batch sizes, augmentation and flips are read (not its dataset, which ``data`` already holds)."""

    data: DataBundle
    run: RunSpec
    train: TrainConfig = field(default_factory=TrainConfig)
    batching: DataConfig = field(default_factory=DataConfig)
    seed: int = 0
    teachers: tuple[Teacher, ...] = ()

    @property
    def teacher(self) -> Teacher:
        """The (first) teacher."""
        if not self.teachers:
            raise UserError("this needs a teacher, and none was given")
        return self.teachers[0]

    def derive(self, run: RunSpec | None = None, *, seed: int | None = None, train: dict[str, Any] | None = None,
               config: dict[str, Any] | None = None) -> "Job":
        """A job like this one with another run directory, seed or ``train`` fields; the run's config records the
        same changes (plus ``config``'s dotted keys, e.g. a method's own settings)."""
        train = train or {}
        changes = {**{f"train.{k}": v for k, v in train.items()}, **({"seed": seed} if seed is not None else {}),
                   **(config or {})}
        spec = run or self.run
        return dataclasses.replace(
            self, run=RunSpec(spec.path, apply_changes(spec.config, changes), spec.tensorboard),
            train=dataclasses.replace(self.train, **train), seed=self.seed if seed is None else seed)
