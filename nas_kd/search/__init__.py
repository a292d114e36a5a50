"""Search for the best subnet under a FLOPs budget: objective (evaluator + budget), strategies, outputs."""
from nas_kd.search import optuna_search  # noqa: F401  (registers optuna-tpe and optuna-nsga2)
from nas_kd.search.objective import Objective
from nas_kd.search.strategies import STRATEGIES

__all__ = ["STRATEGIES", "Objective"]
