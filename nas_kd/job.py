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
from typing import Any, Callable, Literal

import torch
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


Preprocess = Literal["data", "none"] | dict  # what a teacher's inputs are: see :class:`Teacher`


def check_preprocess(spec: Any, where: str = "teacher.preprocess") -> Any:
    """``spec`` if it is a valid ``preprocess`` (``data``, ``none`` or ``{mean: [...], std: [...]}`` with one
    positive std per channel), else a :class:`UserError` naming ``where``."""
    if spec in ("data", "none"):
        return spec
    if isinstance(spec, dict) and set(spec) == {"mean", "std"} and all(
            isinstance(spec[k], (list, tuple)) and spec[k] and all(isinstance(v, (int, float)) and not
                                                                  isinstance(v, bool) for v in spec[k])
            for k in ("mean", "std")) and len(spec["mean"]) == len(spec["std"]) and min(spec["std"]) > 0:
        return {"mean": [float(v) for v in spec["mean"]], "std": [float(v) for v in spec["std"]]}
    raise UserError(f"{where}: expected data (the data's normalisation), none (images in [0, 1]) or "
                    f"{{mean: [...], std: [...]}} (one per channel, std > 0), got {spec!r}")


class TeacherInputs(nn.Module):
    """What the teacher was trained on, from what the students see: undoes the data's normalisation (``data_mean``,
    ``data_std``: images back in [0, 1]) and applies the teacher's own (``mean``, ``std``; none: identity)."""

    def __init__(self, data_mean: torch.Tensor, data_std: torch.Tensor, mean: torch.Tensor | None = None,
                 std: torch.Tensor | None = None) -> None:
        super().__init__()
        scale, shift = data_std.view(1, -1, 1, 1).float(), data_mean.view(1, -1, 1, 1).float()
        if mean is not None:  # (x * s_d + m_d - m_t) / s_t
            t_mean, t_std = mean.view(1, -1, 1, 1).float(), std.view(1, -1, 1, 1).float()
            scale, shift = scale / t_std, (shift - t_mean) / t_std
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale.to(x.dtype) + self.shift.to(x.dtype)


@dataclass
class Teacher:
    """One teacher: how to get its module (called once, on first use: a recipe's teacher that no method needs is
    never loaded), the module names of its stages (for blockwise supervision and feature distillers), what it
    was loaded from (recorded with the results; ``None``: a module given in memory), and ``preprocess``: what its
    inputs must be, as timm's ``pretrained_cfg`` says a model's mean and std: ``data`` (default) the data's
    normalised tensors, as the students see them; ``none`` images in [0, 1]; ``{mean, std}`` its own per-channel
    normalisation. Any other than ``data`` is applied to what the teacher sees (a forward pre-hook on it, so its
    module names stay), once :meth:`for_data` has said what the data's normalisation is."""

    load: Callable[[], nn.Module]
    stages: list[str] = field(default_factory=list)
    source: str | None = None
    preprocess: Preprocess = "data"
    data_stats: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False, compare=False)
    _module: nn.Module | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, module: nn.Module, stages: list[str] | tuple[str, ...] = (), source: str | None = None, *,
           preprocess: Preprocess = "data") -> "Teacher":
        """A teacher from a module in memory (frozen, in eval mode); ``preprocess``: what its inputs must be."""
        if not isinstance(module, nn.Module):
            raise UserError(f"teacher: expected a torch.nn.Module, got {type(module).__name__}")
        return cls(lambda: module, list(stages), source, check_preprocess(preprocess, "preprocess"))

    def for_data(self, data: DataBundle) -> "Teacher":
        """This teacher, fed from ``data`` (whose normalisation its ``preprocess`` undoes)."""
        if self.preprocess == "data":
            return self
        if data.mean is None or data.std is None:
            raise UserError(f"teacher preprocess {self.preprocess!r}: the data does not say how it was normalised")
        return dataclasses.replace(self, data_stats=(data.mean, data.std), _module=None)

    def describe_inputs(self) -> str:
        """What this teacher is fed, in words."""
        if self.preprocess == "data":
            return "the data's normalised images"
        if self.preprocess == "none":
            return "images in [0, 1]"
        return f"images normalised by mean {self.preprocess['mean']}, std {self.preprocess['std']}"

    def module(self) -> nn.Module:
        """The frozen teacher (loaded on the first call), with its ``preprocess`` applied to its inputs."""
        if self._module is None:
            model = freeze(self.load())
            if self.preprocess != "data":
                if self.data_stats is None:
                    raise UserError("teacher preprocess: the teacher is not bound to the data yet (Teacher.for_data)")
                own = self.preprocess if isinstance(self.preprocess, dict) else None
                inputs = TeacherInputs(*self.data_stats, *((torch.tensor(own["mean"]), torch.tensor(own["std"]))
                                                          if own else ()))
                if isinstance(model, torch.jit.ScriptModule):  # no Python hooks on TorchScript: wrap it
                    model = freeze(nn.Sequential(inputs, model))
                else:  # a copy (the caller's module stays as it was), fed through a pre-hook: its names stay
                    model = copy.deepcopy(model)
                    model.register_forward_pre_hook(lambda m, args: (inputs.to(args[0].device)(args[0]), *args[1:]))
            self._module = model
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
