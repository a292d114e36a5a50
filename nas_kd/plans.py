"""The one place where component specs become component objects: a checked recipe section (the command line, the
studies) or an API call's options (:mod:`nas_kd.api`) is turned here into a plan of built components, and the
library below takes plans: nothing there parses or re-checks a component (``tests/test_layout.py`` scans for it).

A plan keeps its section beside the components built from it: the section's plain settings (budgets, probe size,
BatchNorm batches) are read from it, and a caller changes them with :meth:`SearchPlan.with_settings` (never a
component: that is a new plan).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas_kd.config import SearchConfig, SupernetConfig
from nas_kd.distill import Term, parse_terms
from nas_kd.evaluators import build_evaluators
from nas_kd.search.plan import SearchPlan
from nas_kd.search.strategies import build_strategy
from nas_kd.train import SupernetTrainer, mode_name, supernet_trainer
from search_spaces import SPACES

@dataclass(frozen=True)
class SupernetPlan:
    """A ``supernet`` section with its method built: ``trainer`` (``supernet.mode`` and its options)."""

    cfg: SupernetConfig
    trainer: SupernetTrainer

    @property
    def mode(self) -> str:
        return mode_name(self.trainer)


def terms(spec: Any, where: str = "distill", *, logits_only: bool = False) -> list[Term]:
    """A ``distill`` list parsed into terms (names, weights and options checked)."""
    return parse_terms(spec, where, logits_only=logits_only)


def supernet_plan(cfg: SupernetConfig, epochs: int, where: str = "supernet") -> SupernetPlan:
    """The ``supernet`` section ``cfg`` built and checked for ``epochs`` of training: its space, its mode with the
    mode's options, and the mode's own checks of the section."""
    SPACES.get_for(cfg.space, f"{where}.space")
    trainer = supernet_trainer(cfg.mode, f"{where}.mode")
    trainer.check(cfg, epochs)
    return SupernetPlan(cfg, trainer)


def search_plan(cfg: SearchConfig, where: str = "search") -> SearchPlan:
    """The ``search`` section ``cfg`` built: its evaluators (``evaluator`` first, then ``extra_evaluators``; one
    given twice is scored once) and its strategy with the strategy's options."""
    build_evaluators([cfg.evaluator], f"{where}.evaluator")  # a mistake is named by the key that holds it
    build_evaluators(list(cfg.extra_evaluators), f"{where}.extra_evaluators")
    specs = [cfg.evaluator, *cfg.extra_evaluators]
    unique = [s for i, s in enumerate(specs) if s not in specs[:i]]
    evaluators = build_evaluators(unique, f"{where}.evaluator" if len(unique) == 1 else f"{where}.evaluator(s)")
    return SearchPlan(cfg, tuple(evaluators), build_strategy(cfg.strategy, f"{where}.strategy"))


def pruner(spec: Any, where: str = "--pruner") -> tuple[str, Any, dict[str, Any]]:
    """A pruning criterion ``{name, ...options}`` (:data:`nas_kd.pruning.PRUNERS`) built: its name, the pruner and
    its spec as records keep it."""
    from nas_kd.pruning import PRUNERS
    from nas_kd.registry import split_component

    name, options = split_component(spec, where, PRUNERS)
    built = PRUNERS.build_checked(name, PRUNERS.check_options(name, options, where), where)
    return name, built, {"name": name, **built.spec()}
