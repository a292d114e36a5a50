"""Search for the best subnet under a FLOPs budget: objective (evaluator + budget), strategies, outputs."""
from nas_kd.registry import import_modules
from nas_kd.search.objective import Objective
from nas_kd.search.strategies import STRATEGIES

import_modules(__name__, __path__)  # every module registers its strategies: a new one is one new file

__all__ = ["STRATEGIES", "Objective"]
