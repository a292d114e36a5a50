"""Everything a recipe names, checked when it loads: before any run directory, data or model exists.

Every component a user picks by name (``{name, ...options}`` or a bare name) is checked against its
registry and its typed keyword-only constructor: the distillation terms (``distill``,
``supernet.distill``), the evaluators (``search.evaluator``, ``search.extra_evaluators``,
``rankcorr.evaluators``), the strategy and its options, the optimizer, the dataset, the spaces, the
sampler, ``supernet.mode`` and the teacher model's name. A failure is one :class:`~nas_kd.config.RecipeError`
naming the file and the key path, with the close match.
"""
from __future__ import annotations

from pathlib import Path

from nas_kd.config import Recipe, RecipeError, load_recipe
from nas_kd.data import DATASETS
from nas_kd.distill import parse_terms
from nas_kd.errors import UserError
from nas_kd.evaluators import build_evaluators
from nas_kd.models import MODELS
from nas_kd.search.run import search_evaluators
from nas_kd.search.strategies import RUN_INPUTS, STRATEGIES
from nas_kd.train import check_supernet
from nas_kd.train.common import OPTIMIZERS
from search_spaces import SPACES


def check_recipe(recipe: Recipe) -> None:
    """Raise a :class:`~nas_kd.errors.UserError` naming the key of the first component the recipe gets wrong."""
    DATASETS.get_for(recipe.data.dataset, "data.dataset")
    OPTIMIZERS.get_for(recipe.train.optimizer, "train.optimizer")
    for key, teacher in [("teacher", recipe.teacher),
                         *((f"extra_teachers[{i}]", t) for i, t in enumerate(recipe.extra_teachers))]:
        if not (teacher.torchscript or teacher.subnet or ":" in teacher.model):
            MODELS.get_for(teacher.model, f"{key}.model")
    parse_terms(recipe.distill, "distill")
    check_supernet(recipe.supernet, recipe.train.epochs)
    SPACES.get_for(recipe.student.space, "student.space")
    search_evaluators(recipe.search)
    STRATEGIES.get_for(recipe.search.strategy, "search.strategy")
    STRATEGIES.check_options(recipe.search.strategy, recipe.search.strategy_options, "search.strategy_options",
                             given=RUN_INPUTS)
    build_evaluators(recipe.rankcorr.evaluators, "rankcorr.evaluators")


def load_checked(path: str | Path | None, overrides: list[str] = ()) -> Recipe:
    """:func:`~nas_kd.config.load_recipe`, then :func:`check_recipe`; an error names the file first."""
    recipe = load_recipe(path, overrides)
    try:
        check_recipe(recipe)
    except UserError as e:
        raise RecipeError(f"{path or 'recipe'}: {e}") from None
    return recipe
