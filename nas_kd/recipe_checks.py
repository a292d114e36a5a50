"""Everything a recipe names, checked when it loads: before any run directory, data or model exists.

Every component a user picks by name (``{name, ...options}`` or a bare name) is built once from its registry and
its typed keyword-only constructor (:mod:`nas_kd.plans`): the distillation terms (``distill``), the supernet's
mode with its options (``supernet.mode``), the evaluators (``search.evaluator``, ``search.extra_evaluators``,
``rankcorr.evaluators``), the strategy with its options (``search.strategy``), the optimizer, the dataset, the
spaces and the teacher model's name. A failure is one :class:`~nas_kd.config.RecipeError` naming the file and
the key path, with the close match. Older spellings of a recipe are rewritten first (:func:`migrate`), with one
line saying how to write them now.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path

from nas_kd.config import Recipe, RecipeError, load_recipe
from nas_kd.data import DATASETS
from nas_kd.errors import UserError
from nas_kd.evaluators import build_evaluators
from nas_kd.job import check_preprocess
from nas_kd.models import MODELS
from nas_kd.plans import search_plan, supernet_plan, terms
from nas_kd.train import SUPERNET_TRAINERS
from nas_kd.train.common import OPTIMIZERS
from search_spaces import SPACES

# keys that sat at the top of ``supernet:`` before each mode took its own options
LEGACY_SUPERNET_KEYS = ("num_random", "distill", "soft_labels", "mix_weight", "max_teacher_weight", "sampler")


def _spec(value: object) -> dict:
    return {"name": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else {"name": value}


def migrate(data: dict, where: str) -> None:
    """Rewrite, in place, the older spellings of a raw recipe mapping: ``supernet.<option>`` keys of the sandwich
    era move into ``supernet.mode`` (the options its mode takes; one it does not take was ignored before, and is
    dropped), ``search.strategy_options`` into ``search.strategy``. Prints one line saying how to write it now."""
    said = []
    supernet = data.get("supernet")
    if isinstance(supernet, dict) and any(k in supernet for k in LEGACY_SUPERNET_KEYS):
        moved = {k: supernet.pop(k) for k in LEGACY_SUPERNET_KEYS if k in supernet}
        spec = _spec(supernet.get("mode", "sandwich"))
        name = spec.get("name")
        takes = inspect.signature(SUPERNET_TRAINERS.get(name)).parameters if name in SUPERNET_TRAINERS else {}
        spec.update({k: v for k, v in moved.items() if k in takes})  # an override of the old key wins
        supernet["mode"] = spec
        dropped = [k for k in moved if k not in takes]
        said.append(f"supernet.{{{', '.join(moved)}}} are options of supernet.mode now: write supernet.mode: {spec}"
                    + (f" ({', '.join(dropped)} not taken by {name!r}: dropped)" if dropped else ""))
    search = data.get("search")
    if isinstance(search, dict) and "strategy_options" in search:
        options = search.pop("strategy_options") or {}
        spec = _spec(search.get("strategy", "evolution"))
        if isinstance(options, dict):
            spec.update(options)
        search["strategy"] = spec
        said.append(f"search.strategy_options are options of search.strategy now: write search.strategy: {spec}")
    if said:
        print(f"{where}: deprecated spelling: {'; '.join(said)}", file=sys.stderr)


def check_recipe(recipe: Recipe) -> None:
    """Raise a :class:`~nas_kd.errors.UserError` naming the key of the first component the recipe gets wrong."""
    DATASETS.get_for(recipe.data.dataset, "data.dataset")
    OPTIMIZERS.get_for(recipe.train.optimizer, "train.optimizer")
    for key, teacher in [("teacher", recipe.teacher),
                         *((f"extra_teachers[{i}]", t) for i, t in enumerate(recipe.extra_teachers))]:
        if not (teacher.torchscript or teacher.subnet or ":" in teacher.model):
            MODELS.get_for(teacher.model, f"{key}.model")
        check_preprocess(teacher.preprocess, f"{key}.preprocess")
    terms(recipe.distill, "distill")
    supernet_plan(recipe.supernet, recipe.train.epochs)
    SPACES.get_for(recipe.student.space, "student.space")
    search_plan(recipe.search)
    build_evaluators(recipe.rankcorr.evaluators, "rankcorr.evaluators")


def load_checked(path: str | Path | None, overrides: list[str] = ()) -> Recipe:
    """:func:`~nas_kd.config.load_recipe` (older spellings migrated), then :func:`check_recipe`; an error names the
    file first."""
    recipe = load_recipe(path, overrides, migrate=migrate)
    try:
        check_recipe(recipe)
    except UserError as e:
        raise RecipeError(f"{path or 'recipe'}: {e}") from None
    return recipe
