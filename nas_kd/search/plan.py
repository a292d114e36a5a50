"""A ``search`` section with its components built (:func:`nas_kd.plans.search_plan` builds it): what
:func:`nas_kd.search.run.run_search` takes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nas_kd.config import SearchConfig
from nas_kd.evaluators import Evaluator
from nas_kd.search.strategies import Strategy, strategy_name

COMPONENT_KEYS = ("evaluator", "extra_evaluators", "strategy")


@dataclass(frozen=True)
class SearchPlan:
    """A ``search`` section with its components built: ``evaluators`` (``search.evaluator`` first, then the extra
    ones) and ``strategy``."""

    cfg: SearchConfig
    evaluators: tuple[Evaluator, ...]
    strategy: Strategy

    @property
    def names(self) -> list[str]:
        """The evaluators' column names, the optimised one first."""
        return [ev.name for ev in self.evaluators]

    @property
    def strategy_name(self) -> str:
        return strategy_name(self.strategy)

    def with_settings(self, **changes: Any) -> "SearchPlan":
        """This plan with plain settings of its section changed (a budget, the checkpoint, trials)."""
        built = [k for k in changes if k in COMPONENT_KEYS]
        if built:
            raise ValueError(f"with_settings changes settings, not components ({built}): build a new plan")
        return dataclasses.replace(self, cfg=dataclasses.replace(self.cfg, **changes))
