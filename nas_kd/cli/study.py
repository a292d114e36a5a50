"""The search-quality study: ``ground-truth``, ``rank-corr``, ``plot``, ``acceptance``."""
from __future__ import annotations

import argparse
import json

from nas_kd.cli.common import recipe_args
from nas_kd.evaluators import EVALUATORS
from nas_kd.recipe_checks import load_checked
from nas_kd.search.strategies import STRATEGIES
from nas_kd.typecheck import COUNT


def _cmd_rank_corr(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.study import run_rank_corr
    from nas_kd.recipes import study_of

    summary = run_rank_corr(study_of(load_checked(args.recipe, args.overrides)))
    print(json.dumps({k: summary.get(k) for k in ("main_column", "noise_ceiling", "kendall_tau_band", "regret",
                                                  "random_regret", "maxflops_regret", "wall_seconds")}, indent=2))

def _cmd_plot(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.report import plot_study

    print("\n".join(str(p) for p in plot_study(args.run)))

def _cmd_ground_truth(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.ground_truth import run_ground_truth
    from nas_kd.recipes import study_of

    study = study_of(load_checked(args.recipe, args.overrides))
    print(json.dumps(run_ground_truth(study, study.job.run.path, queue=args.queue, max_jobs=args.max_jobs,
                                      commit=args.commit)))

def _cmd_acceptance(args: argparse.Namespace) -> None:
    from nas_kd.rankcorr.acceptance import run_acceptance
    from nas_kd.recipes import acceptance_plans, study_of

    recipe = load_checked(args.recipe, args.overrides)
    seeds = recipe.acceptance.seeds if args.seeds is None else args.seeds
    repeats = recipe.acceptance.search_repeats if args.search_repeats is None else args.search_repeats
    searched, maxflops = acceptance_plans(recipe, args.evaluator, args.strategy)
    print(json.dumps(run_acceptance(study_of(recipe), searched, maxflops, recipe.acceptance, band=args.band,
                                    trials=args.trials, result=args.out, seeds=seeds, search_repeats=repeats,
                                    queue=args.queue, commit=args.commit), indent=2))


def add(sub: argparse._SubParsersAction) -> None:
    """The parsers of this module's commands."""
    p = sub.add_parser("rank-corr", help="search quality: every evaluator vs the ground truth inside each budget band "
                                         "(noise ceiling, Kendall tau, regret), per supernet checkpoint")
    recipe_args(p)
    p.set_defaults(func=_cmd_rank_corr)

    p = sub.add_parser("plot", help="redraw a search-quality study's figures from its saved JSON")
    p.add_argument("--run", required=True, help="the study's run directory (holds rankcorr.json)")
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser("ground-truth", help="work the search-quality study's ground-truth job queue "
                                            "(run it in several processes or machines to share the jobs)")
    recipe_args(p)
    p.add_argument("--queue", help="Optuna RDB URL of the job queue (default: the recipe's, else SQLite in the run dir)")
    p.add_argument("--max-jobs", type=COUNT, help="stop after this many jobs")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.set_defaults(func=_cmd_ground_truth)

    p = sub.add_parser("acceptance", help="at one budget band: searched student vs max-FLOPs, hand-designed and "
                                          "best-of-N-random picks (the recipe's acceptance section), each distilled "
                                          "with the same seeds (Welch t-tests)")
    recipe_args(p)
    p.add_argument("--band", default="0.12", help="the study's band (budget as a fraction of the max arch's FLOPs)")
    p.add_argument("--evaluator", default="kl", help=f"evaluator of the searched student ({', '.join(EVALUATORS.available())})")
    p.add_argument("--strategy", default="evolution",
                   help=f"search strategy of the searched student ({', '.join(STRATEGIES.available())})")
    p.add_argument("--trials", type=COUNT, default=100, help="archs the search scores")
    p.add_argument("--seeds", type=COUNT, help="training seeds per student (0 .. N-1; at least 2; "
                                               "default: the recipe's acceptance.seeds)")
    p.add_argument("--search-repeats", type=COUNT, help="run the search this many times (search seeds seed, seed+1, "
                                                        "...) and train every pick: the searched student's spread "
                                                        "(default: the recipe's acceptance.search_repeats)")
    p.add_argument("--out", default="results/search_fmnist", help="result path without suffix (.json and .md)")
    p.add_argument("--queue", help="Optuna RDB URL of the job queue (default: SQLite in the run dir)")
    p.add_argument("--commit", action="store_true", help="git-commit each record as it lands")
    p.set_defaults(func=_cmd_acceptance)
