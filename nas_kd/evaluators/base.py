"""The evaluator unit: an :class:`Evaluator` scores one subnet (a :class:`SubnetView`) against the teacher.

An evaluator is a class registered in :data:`EVALUATORS` whose options are typed keyword-only
constructor arguments, so a recipe names it as ``rdm`` or ``{name: rdm, method: pearson, proj_dim: 256}``
and a wrong option is refused when the recipe loads. Teacher-side work it needs (the teacher's RDMs,
Gram matrices, Grad-CAM maps) is done in :meth:`Evaluator.prepare`, once per evaluation context.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from nas_kd.errors import OptionError
from nas_kd.registry import Registry, split_component

if TYPE_CHECKING:
    from nas_kd.evaluators.context import EvalContext


class SubnetView(Protocol):
    """What an evaluator reads of one arch: the context and the arch; a view of a weight-sharing supernet's
    recalibrated subnet also gives its probe ``outputs`` (logits, named features) and ``val_accuracy()``."""

    ctx: EvalContext
    arch: dict[str, Any]

    @property
    def outputs(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def val_accuracy(self) -> float: ...

    def paired(self, pairing: str) -> list[tuple[str, list[str]]]: ...


class Evaluator:
    """Scores one subnet; ``raw`` is the natural value, ``higher_is_better`` its direction.

    Subclasses take their options as typed keyword-only constructor arguments and raise
    :class:`~nas_kd.errors.OptionError` for a value out of range. ``reads_supernet`` is False when the
    score ignores the supernet's weights (no subnet is recalibrated; usable without a weight-sharing supernet).
    """

    name: str = ""  # its column: the registered name, with its options if any, e.g. rdm[proj_dim=256]
    higher_is_better: ClassVar[bool] = True
    reads_supernet: ClassVar[bool] = True

    def stages_needed(self, n_stages: int) -> int:
        """How many teacher stages (``teacher.stages``) it pairs with a supernet of ``n_stages`` stages. Default: 0
        (it reads logits only)."""
        return 0

    def prepare(self, ctx: EvalContext) -> None:
        """Teacher-side work before ``ctx``'s archs are scored (called before every scoring call: memoise it
        with ``ctx.memo``). Default: nothing."""

    def raw(self, view: SubnetView) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def oriented(self, raw: float) -> float:
        """The score with higher meaning better."""
        return raw if self.higher_is_better else -raw


EVALUATORS: Registry[Evaluator] = Registry("evaluator")


def supernet_free() -> list[str]:
    """The registered evaluators that ignore a supernet's weights (usable without a weight-sharing supernet)."""
    return [n for n in EVALUATORS.available() if not EVALUATORS.get(n).reads_supernet]


def build_evaluators(specs: list[str | dict[str, Any]], where: str) -> list[Evaluator]:
    """Evaluators from names or ``{name, ...options}`` (checked against each constructor). Each one's ``name``
    (its column in score rows) is the registered name, followed by its options when it has any; columns are unique."""
    built, seen = [], set()
    for i, spec in enumerate(specs):
        at = f"{where}[{i}]" if len(specs) > 1 else where
        name, options = split_component(spec, at, EVALUATORS)
        ev = EVALUATORS.build_checked(name, options, at)
        ev.name = name if not options else f"{name}[{','.join(f'{k}={options[k]}' for k in sorted(options))}]"
        if ev.name in seen:
            raise OptionError(f"{at}: evaluator {ev.name!r} is given twice")
        seen.add(ev.name)
        built.append(ev)
    return built
