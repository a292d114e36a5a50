"""The distiller unit: a small module that turns one training step's outputs into named loss terms.

A recipe composes distillers as a list of terms, each ``{name, weight, ...options}``::

    distill:
      - {name: kd, weight: 0.9, temperature: 4}
      - {name: hint, weight: 1.0, pairs: [[stage3, stage3]]}

The trainer (:mod:`nas_kd.train.distill`) captures the module outputs every distiller asks
for (:meth:`Distiller.student_modules`, :meth:`Distiller.teacher_modules`) with forward hooks,
hands each distiller a :class:`View` of the step, and adds ``weight x`` every term it returns
to the student's cross-entropy. A distiller's own parameters (connectors, auxiliary heads) are
its submodules: the trainer optimises them with the student's, and they never reach an export.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn

from nas_kd.errors import OptionError
from nas_kd.registry import Registry


@dataclass
class View:
    """What a distiller sees of one training step, for one student.

    ``teacher_logits`` / ``teacher_feats`` hold one entry per teacher (detached, in the order of
    ``teacher`` then ``extra_teachers``); ``peer_logits`` the other students' detached logits; ``inputs`` and
    ``student`` the batch and the student itself, for a method that runs the student on transformed inputs.
    """

    y: torch.Tensor
    logits: torch.Tensor
    feats: dict[str, torch.Tensor]
    teacher_logits: list[torch.Tensor] = field(default_factory=list)
    teacher_feats: list[dict[str, torch.Tensor]] = field(default_factory=list)
    peer_logits: list[torch.Tensor] = field(default_factory=list)
    epoch: int = 0
    inputs: torch.Tensor | None = None
    student: nn.Module | None = None


@dataclass
class Probe:
    """Shapes seen in one dummy forward pass, used to check names and build connectors before training.

    ``student_shapes`` / ``teacher_shapes`` map module name -> output shape (batch first) for
    the modules the distillers asked for; ``student_stages`` / ``teacher_stages`` are the
    default stage names of each side (``None`` when a side has no known stages).
    """

    logits_shape: tuple[int, ...]
    student_shapes: dict[str, tuple[int, ...]]
    teacher_shapes: list[dict[str, tuple[int, ...]]]
    student_stages: list[str] | None
    teacher_stages: list[list[str]]
    num_classes: int


class Distiller(nn.Module):
    """Base class of every distillation method (one small file per method family).

    Subclasses set ``needs_teacher`` (does the method read a teacher's outputs?) and override
    :meth:`forward`; feature methods also override the ``*_modules`` hooks and :meth:`bind`.
    ``where`` names the term in the recipe (``distill[1] (hint)``) for error messages.
    """

    needs_teacher: ClassVar[bool] = True
    logits_only: ClassVar[bool] = False  # reads nothing but logits (usable inside supernet training)
    # the pure loss (student, teacher) -> scalar the method applies per pair, when it is one function of the two
    # (the loss contract of tests/test_losses.py runs every method that declares it)
    pure_loss: ClassVar[Callable[..., torch.Tensor] | None] = None
    num_students: int = 1  # students trained together (deep mutual learning trains several)
    where: str = "distill"

    def student_modules(self) -> list[str]:
        """Student submodules whose outputs this distiller reads (after :meth:`resolve`)."""
        return []

    def teacher_modules(self, teacher: int) -> list[str]:
        """Submodules of teacher number ``teacher`` whose outputs this distiller reads."""
        return []

    def resolve(self, student_stages: list[str] | None, teacher_stages: list[list[str]], num_teachers: int) -> None:
        """Fill defaults that depend on the models (e.g. stage pairs) before the probe; raise :class:`OptionError`."""
        if self.needs_teacher and num_teachers == 0:
            raise OptionError(f"{self.where}: needs a teacher (set teacher in the recipe)")
        teacher = getattr(self, "teacher", None)  # the ``teacher`` option of a method that reads one teacher
        if teacher is not None and teacher >= num_teachers:
            raise self.error(f"teacher={teacher} but the recipe gives {num_teachers} teacher(s)")

    def bind(self, probe: Probe) -> None:
        """Check the probed shapes and build learnable parts; raise :class:`OptionError` naming the term."""

    uses_validation: ClassVar[bool] = False  # fit_validation is called before training (teachers' validation logits)
    uses_validation_batches: ClassVar[bool] = False  # validation_step is called every step on a validation batch

    def validation_use(self) -> str | None:
        """What the method does with validation data, as the records say it (None: nothing)."""
        if self.uses_validation_batches:
            return ("runs a validation batch through the student every step, in train mode (its BatchNorm statistics "
                    "move on validation data)")
        if self.uses_validation:
            return "fits its weights on the validation split's labels before training"
        return None

    def see_teachers(self, teachers: list[nn.Module]) -> None:
        """Read what the method needs of the teachers' structure (e.g. module names) after :meth:`resolve`, before
        the names it asks for are checked. Default: nothing."""

    def student_input(self, x: torch.Tensor, student: int, generator: torch.Generator,
                      pad_value: torch.Tensor) -> torch.Tensor:
        """The batch student number ``student`` trains on this step (default: the batch as loaded; a method whose
        students each see their own augmentation draws it from ``generator``, seeded by the step and the student;
        ``pad_value``: a black pixel, normalised)."""
        return x

    def see_student(self, student: nn.Module) -> None:
        """Read (or copy) what the method needs of the student's structure (e.g. its last stage, to branch it) after
        :meth:`resolve`, before the names it asks for are checked. Default: nothing."""

    def validation_step(self, view: View) -> None:
        """Update what the method learns on validation batches (not the student), from a view of one validation
        batch (only when ``uses_validation_batches``). Default: nothing."""

    def fit_validation(self, teacher_logits: list[torch.Tensor], y: torch.Tensor) -> None:
        """Fit what the method learns on the validation split before training, from each teacher's validation
        logits and the labels (only when ``uses_validation``). Default: nothing."""

    def report(self, model: nn.Module, split: Any, batch_size: int) -> dict[str, Any]:
        """What the method says about the trained student ``model`` besides its accuracy, measured on ``split`` (the
        test split), recorded in ``final.json`` under ``method_reports``. Default: nothing."""
        return {}

    def forward(self, view: View) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def error(self, message: str) -> OptionError:
        """A user error naming this term."""
        return OptionError(f"{self.where}: {message}")


DISTILLERS: Registry[Distiller] = Registry("distiller")


@dataclass
class Term:
    """One configured term of a recipe's ``distill`` list."""

    name: str
    weight: float
    options: dict[str, Any]
    where: str

    def spec(self) -> dict[str, Any]:
        """The term as a ``distill`` list entry (how results record it)."""
        return {"name": self.name, "weight": self.weight, **self.options}


def parse_terms(spec: Any, key: str = "distill", *, logits_only: bool = False) -> list[Term]:
    """Check a recipe's ``distill`` list (names, weights, options against each constructor);
    ``logits_only`` refuses methods that read more than logits.

    Raises :class:`OptionError` naming ``<key>[i]`` and the option at fault.
    """
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise OptionError(f"{key}: expected a list of {{name, weight, ...options}}, got {spec!r}")
    terms = []
    for i, item in enumerate(spec):
        where = f"{key}[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise OptionError(f"{where}: expected a mapping with a 'name' (one of {', '.join(DISTILLERS.available())})")
        options = {k: v for k, v in item.items() if k not in ("name", "weight")}
        name, weight = item["name"], item.get("weight", 1.0)
        where = f"{where} ({name})"
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
            raise OptionError(f"{where}.weight: must be a finite number >= 0, got {weight!r}")
        options = DISTILLERS.check_options(name, options, where)
        DISTILLERS.build_checked(name, options, where)  # the constructor checks the values' ranges
        if logits_only and not DISTILLERS.get(name).logits_only:
            usable = [n for n in DISTILLERS.available() if DISTILLERS.get(n).logits_only]
            raise OptionError(f"{where}: {name} reads more than logits; here only logit methods work: "
                              f"{', '.join(usable)}")
        terms.append(Term(name, float(weight), options, where))
    return terms


def build_distiller(term: Term) -> Distiller:
    """A fresh distiller for ``term`` (one per student: connectors are not shared)."""
    d = DISTILLERS.build_checked(term.name, term.options, term.where)
    d.where = term.where
    return d


def check_pair(where: str, pair: tuple[str, str], s: tuple[int, ...], t: tuple[int, ...], logits: tuple[int, ...],
               *, maps: bool) -> None:
    """Refuse a feature pair that holds logits, is not a 4-d map (when ``maps``), or whose sizes cannot be matched."""
    for side, name, shape in (("student", pair[0], s), ("teacher", pair[1], t)):
        if len(shape) == 2 and shape[1] == logits[1]:
            raise OptionError(f"{where}: {side} module {name!r} outputs logits {list(shape)}; "
                              "a feature method needs feature maps (e.g. a stage), a logit method (kd) takes logits")
        if maps and len(shape) != 4:
            raise OptionError(f"{where}: {side} module {name!r} outputs shape {list(shape)}, not a 4-d feature map")
    if len(s) == 4 and len(t) == 4 and s[-2:] != t[-2:]:
        big, small = (s, t) if s[-1] >= t[-1] else (t, s)
        if big[-2] % small[-2] or big[-1] % small[-1]:
            raise OptionError(f"{where}: pair {list(pair)} has spatial sizes {list(s[-2:])} and {list(t[-2:])}: "
                              "neither divides the other, so they cannot be matched by pooling")
