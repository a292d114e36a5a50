"""Search strategies, chosen by ``search.strategy`` (a name or ``{name, ...options}``): random, evolution,
dna-exhaustive here; optuna-tpe and optuna-nsga2 (:mod:`.optuna_search`), reinforce (:mod:`.reinforce`), slim
(:mod:`.slim`), cream-board (:mod:`.cream_board`); a new strategy is one new module of this package.

Every strategy is a :class:`Strategy`: its options are the typed keyword-only fields of the class (ranges as
``Annotated`` metadata, checked when the recipe or the API call is read), and the search hands it one typed
:class:`SearchInputs`. It scores at most ``trials`` distinct archs, all under the objective's budgets
(over-budget proposals are never scored), and returns ``objective.rows()``: every scored arch, best first.
"""
from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nas_kd.errors import UserError
from nas_kd.registry import Registry, split_component
from nas_kd.search.objective import Objective, Row, arch_key
from nas_kd.typecheck import AtLeast1, Probability

if TYPE_CHECKING:
    from nas_kd.evaluators import EvalContext


@dataclass(frozen=True)
class SearchInputs:
    """What the search gives a strategy besides its options.

    ``objective``: scores an arch once and checks the budgets; ``trials``: the most distinct archs to score;
    ``seed``: every random choice derives from it; ``storage`` / ``study_name``: an Optuna RDB URL and study that
    workers share (``None``: in memory); ``dna_tables``: blockwise ranking tables (``nas-kd dna-rank``);
    ``checkpoint``: the supernet file searched; ``context``: the evaluators' context (teacher, probe batches,
    supernet); ``workdir``: where a strategy may write its own record."""

    objective: Objective
    trials: int
    seed: int = 0
    storage: str | None = None
    study_name: str = "nas-kd"
    dna_tables: str | None = None
    checkpoint: str | None = None
    context: EvalContext | None = None
    workdir: Path | None = None


@dataclass(kw_only=True)
class Strategy:
    """One search strategy (Optuna's ``BaseSampler`` is the model).

    Call order: (1) the class is built once from its options where the recipe or the API call is read (a bad
    option fails there, before any work); (2) :meth:`search` is called once per search with the run's
    :class:`SearchInputs`; it raises :class:`~nas_kd.errors.UserError` before scoring anything when the inputs
    cannot serve it (e.g. no ranking tables). Its contract (``tests/test_contracts.py``, run over every
    registered strategy): at most ``trials`` archs scored, none over a budget, rows best first and distinct, the
    same rows for the same seed, and run again on the journal of a killed search (the objective's), nothing scored
    twice; with ``replays`` (its proposals are a pure function of the seed and the scores), the rows of an
    uninterrupted search."""

    replays: ClassVar[bool] = True

    def search(self, run: SearchInputs) -> list[Row]:  # pragma: no cover - abstract
        raise NotImplementedError


STRATEGIES: Registry[Strategy] = Registry("strategy")


def build_strategy(spec: str | dict[str, Any], where: str = "search.strategy") -> Strategy:
    """The strategy a ``search.strategy`` value names, built with its options (checked against the class)."""
    name, options = split_component(spec, where, STRATEGIES)
    return STRATEGIES.build_checked(name, options, f"{where} ({name})")


def strategy_name(strategy: Strategy) -> str:
    """The registered name of a built strategy."""
    return next(n for n in STRATEGIES.available() if type(strategy) is STRATEGIES.get(n))


@STRATEGIES.register("random")
@dataclass(kw_only=True)
class RandomSearch(Strategy):
    """``trials`` random archs under the budget (stopping short after ``proposals_per_trial`` x ``trials`` draws,
    when the feasible archs are fewer than ``trials``)."""

    proposals_per_trial: AtLeast1 = 20

    def search(self, run: SearchInputs) -> list[Row]:
        objective, rng = run.objective, random.Random(run.seed)
        for _ in range(run.trials * self.proposals_per_trial):
            if len(objective.cache) >= run.trials:
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
@dataclass(kw_only=True)
class Evolution(Strategy):
    """Regularised (aging) evolution (Real et al. 2019) with stage-wise crossover.

    Tournament of ``sample_size`` from the population; the child (crossover of two tournament
    winners with probability ``crossover_prob``, then mutation) is redrawn until it fits the budget
    (``child_retries`` times, then a random feasible arch); the oldest member dies. The search stops short
    after ``stall_per_trial`` x ``trials`` children in a row that were already scored.
    """

    population: AtLeast1 = 20
    sample_size: AtLeast1 = 5
    mutation_prob: Probability = 0.1
    crossover_prob: Probability = 0.5
    child_retries: AtLeast1 = 100
    stall_per_trial: AtLeast1 = 50

    def search(self, run: SearchInputs) -> list[Row]:
        objective, trials = run.objective, run.trials
        space, rng = objective.space, random.Random(run.seed)
        pop: deque[dict] = deque()
        while len(pop) < min(self.population, trials):
            arch = objective.sample_feasible(rng)
            objective(arch)
            pop.append(arch)
        stall = 0
        while len(objective.cache) < trials and stall < self.stall_per_trial * trials:

            def winner() -> dict:
                return max(rng.sample(list(pop), min(self.sample_size, len(pop))), key=objective.score)

            parent = winner()
            for _ in range(self.child_retries):
                child = crossover(space, parent, winner(), rng) if rng.random() < self.crossover_prob else parent
                child = mutate(space, child, rng, self.mutation_prob)
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
@dataclass(kw_only=True)
class DnaExhaustive(Strategy):
    """The exact knapsack over the DNA ranking tables (every arch of the space): its best ``min(trials, k)``
    archs under the budget, then scored by the objective's evaluators."""

    k: AtLeast1 = 20

    def search(self, run: SearchInputs) -> list[Row]:
        if not run.dna_tables:
            raise UserError("strategy dna-exhaustive needs search.dna_tables (a ranking from nas-kd dna-rank)")
        from nas_kd.dna.exact import exact_search
        from nas_kd.dna.score import load_tables

        objective = run.objective
        found = exact_search(load_tables(run.dna_tables), [objective.budget], k=min(run.trials, self.k),
                             check_fvcore=False)
        for entry in next(iter(found["by_budget"].values())):
            objective(entry["arch"])
        return objective.rows()
