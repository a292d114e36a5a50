"""The staged search space every built-in space is: stages of elastic depth and width, per-block choices.

Spaces are declared with ``nni.mutable``: one ``Categorical`` per choice, labelled
``stageI.depth``, ``stageI.width`` and ``stageI.blockJ.<choice>`` (1-based). An architecture
is a plain ``{label: value}`` dict. Choices of blocks beyond a stage's depth do not change
the network; the *canonical* form sets them to their first value, so equal networks have
equal dicts (use it as a cache key).

A space is built for one input shape (C, H, W) and number of classes (default 1 x 28 x 28 and
10): its specs, FLOPs, parameter counts and supernets are for that shape
(``search_spaces.get(name, input_shape=..., num_classes=...)``).
"""
from __future__ import annotations

import difflib
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

import nni.mutable as nm

from nas_kd.errors import BudgetError, UserError
from nas_kd.flops import conv_bn_cost
from nas_kd.subnet import Spec, block_cost, shape_text, spec_cost

Arch = dict[str, Any]
DEFAULT_INPUT_SHAPE = (1, 28, 28)
DEFAULT_NUM_CLASSES = 10


def check_shape(input_shape: Any, num_classes: Any) -> tuple[tuple[int, int, int], int]:
    """``(input_shape, num_classes)`` as ``((C, H, W), K)`` of positive ints; a :class:`UserError` otherwise."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
        raise UserError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise UserError(f"num_classes must be an int >= 2, got {num_classes!r}")
    return shape, num_classes


@dataclass(frozen=True)
class StageDef:
    """One stage: its stride, the allowed depths and widths, and per-block choices (name -> values)."""

    stride: int
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    block_choices: dict[str, tuple] = field(default_factory=dict)


class StagedSpace:
    """Base class of the built-in spaces; subclasses set ``family`` and define :meth:`block`."""

    name: str = ""
    family: str = ""

    def __init__(self, stages: list[StageDef], stem_width: int = 16, input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
                 num_classes: int = DEFAULT_NUM_CLASSES) -> None:
        self.stages = stages
        self.stem_width = stem_width
        self.input_shape, self.num_classes = check_shape(input_shape, num_classes)
        symbols: dict[str, nm.Categorical] = {}
        for i, st in enumerate(stages, start=1):
            symbols[f"stage{i}.depth"] = nm.Categorical(list(st.depths), label=f"stage{i}.depth")
            symbols[f"stage{i}.width"] = nm.Categorical(list(st.widths), label=f"stage{i}.width")
            for j in range(1, max(st.depths) + 1):
                for choice, values in st.block_choices.items():
                    label = f"stage{i}.block{j}.{choice}"
                    symbols[label] = nm.Categorical(list(values), label=label)
        self.mutable = nm.MutableDict(symbols)
        self.choices: dict[str, list] = {label: list(c.values) for label, c in self.mutable.simplify().items()}

    # --- the family-specific part -------------------------------------------------------
    def block(self, cin: int, width: int, stride: int, choices: dict[str, Any], first: bool) -> dict[str, Any]:
        """The spec block (see :mod:`nas_kd.subnet`) for one block's choices."""
        raise NotImplementedError

    @property
    def kernel_sizes(self) -> list[int]:
        """Kernel sizes the supernet's elastic convolutions must offer."""
        raise NotImplementedError

    # --- architectures -------------------------------------------------------------------
    def labels(self) -> list[str]:
        """Every label, in declaration order."""
        return list(self.choices)

    def stage_labels(self, stage: int) -> list[str]:
        """Labels of stage ``stage`` (1-based)."""
        return [lbl for lbl in self.choices if lbl.split(".")[0] == f"stage{stage}"]

    def canonical(self, arch: Arch) -> Arch:
        """``arch`` with the choices of blocks beyond each stage's depth reset to their first value."""
        out = dict(arch)
        for label, values in self.choices.items():
            parts = label.split(".")
            if len(parts) == 3 and int(parts[1][5:]) > arch[f"{parts[0]}.depth"]:
                out[label] = values[0]
        return out

    def validate(self, arch: Any) -> Arch:
        """The canonical form of ``arch``; ``ValueError`` naming the label and the allowed values otherwise."""
        if not isinstance(arch, dict):
            raise UserError(f"{self.name}: an architecture is a dict {{label: value}}, got {type(arch).__name__}")
        for label in arch:
            if label not in self.choices:
                close = difflib.get_close_matches(str(label), self.choices, n=2)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                raise UserError(f"{self.name}: unknown label {label!r}{hint}")
        out = {}
        for label, values in self.choices.items():
            if label not in arch:
                raise UserError(f"{self.name}: missing label {label!r} (allowed values: {values})")
            value = arch[label]
            if isinstance(value, bool) or value not in values:
                raise UserError(f"{self.name}: {label}={value!r} is not allowed; allowed values: {values}")
            out[label] = values[values.index(value)]
        return self.canonical(out)

    def contains(self, arch: Any) -> bool:
        """Whether ``arch`` is a valid architecture of this space."""
        try:
            self.validate(arch)
        except UserError:
            return False
        return True

    def sample(self, rng: random.Random) -> Arch:
        """A random canonical architecture: each label uniformly from its values."""
        return self.canonical({label: rng.choice(values) for label, values in self.choices.items()})

    def max_arch(self) -> Arch:
        """The largest architecture (every choice at its largest value)."""
        return self.canonical({label: max(values) for label, values in self.choices.items()})

    def min_arch(self) -> Arch:
        """The smallest architecture (every choice at its smallest value)."""
        return self.canonical({label: min(values) for label, values in self.choices.items()})

    def stage_candidates(self, stage: int) -> list[Arch]:
        """Every distinct choice of stage ``stage`` (1-based), as partial canonical archs over its labels."""
        st = self.stages[stage - 1]
        names = list(st.block_choices)
        per_block = list(itertools.product(*(st.block_choices[n] for n in names)))
        out = []
        for width in st.widths:
            for depth in st.depths:
                for combo in itertools.product(per_block, repeat=depth):
                    cand = {f"stage{stage}.depth": depth, f"stage{stage}.width": width}
                    for j in range(1, max(st.depths) + 1):
                        values = combo[j - 1] if j <= depth else [st.block_choices[n][0] for n in names]
                        cand.update({f"stage{stage}.block{j}.{n}": v for n, v in zip(names, values)})
                    out.append(cand)
        return out

    def stage_size(self, stage: int) -> int:
        """Number of distinct networks of one stage."""
        st = self.stages[stage - 1]
        per_block = math.prod(len(v) for v in st.block_choices.values())
        return len(st.widths) * sum(per_block**d for d in st.depths)

    def size(self) -> int:
        """Number of distinct architectures (choices of blocks beyond a stage's depth not counted)."""
        return math.prod(self.stage_size(i) for i in range(1, len(self.stages) + 1))

    # --- networks and costs ----------------------------------------------------------------
    def spec(self, arch: Arch) -> Spec:
        """The static network spec (see :mod:`nas_kd.subnet`) of a valid ``arch``, for this space's input shape."""
        cin = self.stem_width
        stages = []
        for i, st in enumerate(self.stages, start=1):
            width = arch[f"stage{i}.width"]
            blocks = []
            for j in range(1, arch[f"stage{i}.depth"] + 1):
                choices = {n: arch[f"stage{i}.block{j}.{n}"] for n in st.block_choices}
                blocks.append(self.block(cin, width, st.stride if j == 1 else 1, choices, first=j == 1))
                cin = width
            stages.append(blocks)
        return {
            "family": self.family, "input_shape": list(self.input_shape), "num_classes": self.num_classes,
            "stem": {"out": self.stem_width, "kernel": 3, "stride": 1},
            "stages": stages, "head": {"in": cin},
        }

    # --- stage by stage (blockwise training and the exact search) ----------------------------
    def stage_input_width(self, stage: int, arch: Arch | None = None) -> int:
        """Channels entering stage ``stage``: the previous stage's width in ``arch`` (its max without one)."""
        if stage == 1:
            return self.stem_width
        prev = self.stages[stage - 2]
        return arch[f"stage{stage - 1}.width"] if arch is not None else max(prev.widths)

    def stage_input_size(self, stage: int) -> tuple[int, int]:
        """Spatial size (h, w) entering stage ``stage`` (same padding: only strides change it)."""
        h, w = self.input_shape[1:]  # the stem has stride 1
        for st in self.stages[: stage - 1]:
            h, w = (h - 1) // st.stride + 1, (w - 1) // st.stride + 1
        return h, w

    def stage_blocks(self, stage: int, cand: Arch, cin: int) -> list[dict[str, Any]]:
        """Spec blocks of stage ``stage`` for the stage's choices ``cand`` fed ``cin`` channels."""
        st, width = self.stages[stage - 1], cand[f"stage{stage}.width"]
        blocks = []
        for j in range(1, cand[f"stage{stage}.depth"] + 1):
            choices = {n: cand[f"stage{stage}.block{j}.{n}"] for n in st.block_choices}
            blocks.append(self.block(cin if j == 1 else width, width, st.stride if j == 1 else 1, choices, first=j == 1))
        return blocks

    def stage_flops(self, stage: int, cand: Arch, cin: int) -> int:
        """FLOPs of stage ``stage`` with choices ``cand`` and ``cin`` input channels."""
        size, total = self.stage_input_size(stage), 0
        for b in self.stage_blocks(stage, cand, cin):
            f, _, size = block_cost(b, size, self.family)
            total += f
        return total

    def fixed_flops(self, last_width: int) -> int:
        """FLOPs outside the stages: the stem and the head (pool + linear) after a last stage of ``last_width``."""
        stem, _, _ = conv_bn_cost(self.input_shape[0], self.stem_width, 3, 1, self.input_shape[1:])
        h, w = self.stage_input_size(len(self.stages) + 1)
        return stem + last_width * h * w + last_width * self.num_classes

    def flops(self, arch: Arch) -> int:
        """FLOPs (fvcore convention: multiply-adds, BatchNorm included) of ``arch`` for one 1 x C x H x W input."""
        return spec_cost(self.spec(self.validate(arch)))[0]

    def check_budget(self, budget_flops: float) -> None:
        """Fail at once, naming the space's smallest and largest FLOPs, if no arch fits ``budget_flops``."""
        lo, hi = self.flops(self.min_arch()), self.flops(self.max_arch())
        if budget_flops < lo:
            raise BudgetError(f"budget {budget_flops / 1e6:.3f} MFLOPs is below the smallest {self.name} arch "
                              f"({lo / 1e6:.3f} MFLOPs; the largest has {hi / 1e6:.3f})")

    def params(self, arch: Arch) -> int:
        """Parameter count of the exported ``arch`` (for this space's input channels and classes)."""
        return spec_cost(self.spec(self.validate(arch)))[1]

    def latency(self, arch: Arch, table: dict[str, Any]) -> float:
        """Predicted latency (ms) of ``arch`` from a per-block latency table (:mod:`nas_kd.latency`)."""
        from nas_kd.latency import predict_ms

        return predict_ms(self, arch, table)

    def build_supernet(self, kernel_transform: bool = False):
        """A fresh weight-sharing :class:`nas_kd.supernet.Supernet` over this space (its input shape and classes)."""
        from nas_kd.supernet import Supernet

        return Supernet(self, kernel_transform=kernel_transform)

    def describe(self) -> str:
        """``name`` plus its input shape and classes, for messages."""
        return f"{self.name} ({shape_text(self.input_shape)} input, {self.num_classes} classes)"
