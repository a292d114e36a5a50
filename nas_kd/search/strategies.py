"""Search strategies, chosen by name: random, evolution, dna-exhaustive here; optuna-tpe and optuna-nsga2
(:mod:`.optuna_search`), reinforce (:mod:`.reinforce`), slim (:mod:`.slim`), cream-board (:mod:`.cream_board`).

Each is ``strategy(objective, trials, seed, **options)``, its options typed keyword-only arguments (ranges as
``Annotated`` metadata, checked when the recipe loads), and scores at most ``trials`` distinct
archs, all under the objective's FLOPs budget (over-budget proposals are never scored). The
result is ``objective.rows()``: every scored arch, best first.
"""
from __future__ import annotations

import inspect
import random
from collections import deque
from typing import Any

from nas_kd.errors import UserError
from nas_kd.registry import Registry
from nas_kd.search.objective import Objective, arch_key
from nas_kd.typecheck import AtLeast1, Probability

STRATEGIES: Registry = Registry("strategy")
# inputs the search itself gives a strategy (when its signature takes them); everything else is an option
# the user sets in ``search.strategy_options``, checked against the strategy's signature
RUN_INPUTS = ("objective", "trials", "seed", "storage", "study_name", "dna_tables", "checkpoint", "context", "workdir")


def run_strategy(name: str, objective: Objective, trials: int, options: dict[str, Any], **inputs: Any) -> list[dict]:
    """Run strategy ``name`` with the user's ``options`` (checked) and the run ``inputs`` its signature takes."""
    options = STRATEGIES.check_options(name, options, "search.strategy_options", given=RUN_INPUTS)
    fn = STRATEGIES.get(name)
    accepted = inspect.signature(fn).parameters
    return fn(objective, trials, **{k: v for k, v in inputs.items() if k in accepted}, **options)


@STRATEGIES.register("random")
def random_search(objective: Objective, trials: int, *, seed: int = 0, proposals_per_trial: AtLeast1 = 20) -> list[dict]:
    """``trials`` random archs under the budget (stopping short after ``proposals_per_trial`` x ``trials`` draws,
    when the feasible archs are fewer than ``trials``)."""
    rng = random.Random(seed)
    for _ in range(trials * proposals_per_trial):
        if len(objective.cache) >= trials:
            break
        objective(objective.sample_feasible(rng))
    return objective.rows()


def mutate(space, arch: dict, rng: random.Random, prob: float) -> dict:
    """Each label re-drawn with probability ``prob`` (at least one changes)."""
    labels = list(space.choices)
    forced = rng.choice(labels)
    child = dict(arch)
    for label in labels:
        if label == forced or rng.random() < prob:
            child[label] = rng.choice([v for v in space.choices[label] if v != arch[label]] or space.choices[label])
    return space.canonical(child)


def crossover(space, a: dict, b: dict, rng: random.Random) -> dict:
    """Stage-wise uniform crossover (a stage's depth, width and blocks travel together)."""
    n = len(space.stages)
    child = {}
    for i in range(1, n + 1):
        src = a if rng.random() < 0.5 else b
        child.update({lbl: src[lbl] for lbl in space.stage_labels(i)})
    return space.canonical(child)


@STRATEGIES.register("evolution")
def evolution(objective: Objective, trials: int, *, seed: int = 0, population: AtLeast1 = 20,
              sample_size: AtLeast1 = 5, mutation_prob: Probability = 0.1, crossover_prob: Probability = 0.5,
              child_retries: AtLeast1 = 100, stall_per_trial: AtLeast1 = 50) -> list[dict]:
    """Regularised (aging) evolution (Real et al. 2019) with stage-wise crossover.

    Tournament of ``sample_size`` from the population; the child (crossover of two tournament
    winners with probability ``crossover_prob``, then mutation) is redrawn until it fits the budget
    (``child_retries`` times, then a random feasible arch); the oldest member dies. The search stops short
    after ``stall_per_trial`` x ``trials`` children in a row that were already scored.
    """
    space, rng = objective.space, random.Random(seed)
    pop: deque[dict] = deque()
    while len(pop) < min(population, trials):
        arch = objective.sample_feasible(rng)
        objective(arch)
        pop.append(arch)
    stall = 0
    while len(objective.cache) < trials and stall < stall_per_trial * trials:

        def winner() -> dict:
            return max(rng.sample(list(pop), min(sample_size, len(pop))), key=objective.score)

        parent = winner()
        for _ in range(child_retries):
            child = crossover(space, parent, winner(), rng) if rng.random() < crossover_prob else parent
            child = mutate(space, child, rng, mutation_prob)
            if objective.feasible(child):
                break
        else:
            child = objective.sample_feasible(rng)
        known = arch_key(child) in objective.cache
        objective(child)
        stall = stall + 1 if known else 0
        pop.append(child)
        pop.popleft()
    return objective.rows()


@STRATEGIES.register("dna-exhaustive")
def dna_exhaustive(objective: Objective, trials: int, *, dna_tables: str | None = None, k: AtLeast1 = 20) -> list[dict]:
    """The exact knapsack over the DNA ranking tables (every arch of the space): its best ``min(trials, k)``
    archs under the budget, then scored by the objective's evaluators."""
    if not dna_tables:
        raise UserError("strategy dna-exhaustive needs search.dna_tables (a ranking from nas-kd dna-rank)")
    from nas_kd.dna.exact import exact_search
    from nas_kd.dna.score import load_tables

    found = exact_search(load_tables(dna_tables), [objective.budget], k=min(trials, k), check_fvcore=False)
    for entry in next(iter(found["by_budget"].values())):
        objective(entry["arch"])
    return objective.rows()
