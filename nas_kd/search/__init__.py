"""Search for the best subnet under a FLOPs budget: objective (evaluator + budget), strategies, outputs."""
from nas_kd.search import cream_board, optuna_search, reinforce, slim  # noqa: F401  (register their strategies)
from nas_kd.search.objective import Objective
from nas_kd.search.strategies import STRATEGIES

__all__ = ["STRATEGIES", "Objective"]
