"""Optuna strategies: ``optuna-tpe`` (score; FLOPs and latency budgets as constraints) and ``optuna-nsga2`` (score vs FLOPs).

The study lives in ``storage`` (an Optuna RDB URL; the CLI defaults to a SQLite file in the run
directory), so a killed search resumes and several workers can share one study: each worker runs
trials until the study has scored ``trials`` distinct archs, and every worker reports the study's
rows (``nas-kd search --report`` rewrites the outputs from the study alone). Every finished trial keeps
its arch and scores as user attributes, so a resumed or parallel worker re-scores nothing already
known; with heartbeats, a trial whose worker was killed is failed instead of staying RUNNING.
Over-budget proposals are never scored: they are recorded as infeasible (constraint > 0) with the
worst score seen (a very low value before any arch is scored).
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

from nas_kd.search.objective import Row, arch_key
from nas_kd.search.strategies import STRATEGIES, SearchInputs, Strategy
from nas_kd.studies import open_storage
from nas_kd.typecheck import AtLeast1, Range

HEARTBEAT_SECONDS = 30
UNSCORED = -1e30  # the value of an over-budget proposal before any arch has a score


def _study(storage: str | None, study_name: str, sampler_options: dict[str, Any], multi: bool):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
    # heartbeats: a trial whose worker was killed is failed after the grace period instead of staying RUNNING
    storage = open_storage(storage, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=4 * HEARTBEAT_SECONDS)
    if multi:
        sampler = optuna.samplers.NSGAIISampler(**sampler_options)
        return optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, load_if_exists=True,
                                   directions=["maximize", "minimize"])
    sampler = optuna.samplers.TPESampler(**sampler_options, multivariate=True)
    return optuna.create_study(storage=storage, study_name=study_name, sampler=sampler, load_if_exists=True,
                               direction="maximize")


def study_rows(study) -> dict[str, dict]:
    """``{arch key: row}`` of every arch scored by any worker of ``study``."""
    import optuna

    rows = {}
    for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE]):
        if "row" in t.user_attrs:
            row = json.loads(t.user_attrs["row"])
            rows.setdefault(arch_key(row["arch"]), row)
    return rows


def _run(run: SearchInputs, multi: bool, sampler_options: dict[str, Any], proposals_per_trial: int) -> list[Row]:
    """Run trials until the study (all its workers together) has scored ``trials`` distinct archs; returns the
    rows of every arch the study scored, so each worker reports the study's result, not its own share."""
    objective, trials, study_name = run.objective, run.trials, run.study_name
    study = _study(run.storage, study_name, sampler_options, multi)
    space = objective.space
    budget_m = objective.budget / 1e6

    def run_trial(trial) -> Any:
        arch = space.canonical({label: trial.suggest_categorical(label, values)
                                for label, values in space.choices.items()})
        mflops = space.flops(arch) / 1e6
        over = {"flops_over_budget": mflops - budget_m}
        if objective.budget_ms is not None:
            over["latency_over_budget"] = objective.latency_ms(arch) - objective.budget_ms
        for name, value in over.items():
            trial.set_constraint(name, value)
        if max(over.values()) > 0:
            known = [r[objective.primary] for r in objective.cache.values()]
            worst = min(known) if known else UNSCORED  # nothing scored yet: rank it below everything
            return (worst, mflops) if multi else worst
        row = objective(arch)
        trial.set_user_attr("row", json.dumps(row))
        return (row[objective.primary], mflops) if multi else row[objective.primary]

    proposals = 0
    while True:
        for key, row in study_rows(study).items():  # scored by earlier or parallel workers: never rescored
            objective.cache.setdefault(key, row)
        if len(study_rows(study)) >= trials:
            break
        if proposals >= proposals_per_trial * trials:  # the sampler keeps proposing known or over-budget archs
            print(f"warning: {study_name}: {len(study_rows(study))} distinct archs scored after {proposals} proposals; "
                  f"stopping short of {trials}")
            break
        study.optimize(run_trial, n_trials=1)
        proposals += 1
    return objective.rows()


@STRATEGIES.register("optuna-tpe")
@dataclass(kw_only=True)
class OptunaTPE(Strategy):
    """TPE (multivariate; Bergstra et al. 2011, Optuna's sampler) on the evaluator score; the FLOPs budget is an
    Optuna constraint. ``n_startup_trials``: random trials before TPE models the scores (Optuna's default);
    ``proposals_per_trial``: the search stops short after this many proposals per trial (known or over-budget)."""

    replays: ClassVar[bool] = False  # the sampler's state is not saved: a resumed study goes on from its trials
    n_startup_trials: Annotated[int, Range(0)] = 10
    proposals_per_trial: AtLeast1 = 20

    def search(self, run: SearchInputs) -> list[Row]:
        return _run(run, False, {"seed": run.seed, "n_startup_trials": self.n_startup_trials},
                    self.proposals_per_trial)


@STRATEGIES.register("optuna-nsga2")
@dataclass(kw_only=True)
class OptunaNSGA2(Strategy):
    """NSGA-II (Deb et al. 2002) on (score up, FLOPs down) under the budget constraint; see :func:`pareto_front`
    for the front. ``proposals_per_trial`` as for ``optuna-tpe``."""

    replays: ClassVar[bool] = False
    population: Annotated[int, Range(2)] = 20
    proposals_per_trial: AtLeast1 = 20

    def search(self, run: SearchInputs) -> list[Row]:
        return _run(run, True, {"seed": run.seed, "population_size": self.population}, self.proposals_per_trial)
