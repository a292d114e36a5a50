"""``nas-kd bench strategies``: sample efficiency of the search strategies where the exact optimum is known.

On committed DNA ranking tables (``nas-kd dna-rank``) an arch's score is the sum of its stages' scores, and the
exact search (:func:`nas_kd.dna.exact.exact_search`, a knapsack over every arch of the space) gives the best score
under a FLOPs budget. Each strategy searches the same tables (the ``dna`` evaluator) with 5 seeds at 3 budgets;
after each newly scored arch the best score so far is recorded, and the table reports the regret (best found
minus the exact optimum, in the tables' score units, lower is better; 0: the optimum was found) after 10 .. N
trials, mean +- s.d. over seeds, and how many seeds found the optimum itself.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from nas_kd.dna.exact import exact_search
from nas_kd.dna.score import DnaScorer, load_tables
from nas_kd.search.objective import Objective
from nas_kd.results.strategies import shared_note
from nas_kd.search.strategies import SearchInputs, build_strategy
from search_spaces import from_meta

CHECKPOINTS = (10, 20, 50, 100, 200)


def best_curve(rows_in_order: list[float], trials: int) -> list[float]:
    """The best (lowest) score after each of the first ``trials`` scored archs (the last repeated if fewer)."""
    out, best = [], float("inf")
    for s in rows_in_order[:trials]:
        best = min(best, s)
        out.append(best)
    return out + [best] * (trials - len(out))


def bench_strategies(tables_path: str, strategies: list[str], fractions: list[float], seeds: int,
                     trials: int) -> dict[str, Any]:
    tables = load_tables(tables_path)
    space = from_meta(tables)
    scorer = DnaScorer(tables)
    max_flops = space.flops(space.max_arch())
    checkpoints = sorted({c for c in CHECKPOINTS if c <= trials} | {trials})
    out: dict[str, Any] = {"tables": tables_path, "space": space.name, "trials": trials, "seeds": seeds,
                           "checkpoints": checkpoints, "score": "dna (rel_l1, stage_mean); lower is better",
                           "budgets": {}}
    for f in fractions:
        budget = f * max_flops
        exact = exact_search(tables, [budget], k=1, check_fvcore=False)
        optimum = next(iter(exact["by_budget"].values()))[0]["score"]
        per_strategy = {}
        for name in strategies:
            strategy = build_strategy(name, "--strategies")
            curves = []
            for seed in range(seeds):
                def score(arch: dict) -> dict:
                    return {"arch": arch, "mflops": space.flops(arch) / 1e6, "mparams": space.params(arch) / 1e6,
                            "dna": -scorer.score(arch)}

                obj = Objective(space, score, "dna", budget)
                strategy.search(SearchInputs(obj, trials, seed=seed, study_name=f"{name}-{f}-{seed}"))
                curves.append([b - optimum for b in best_curve([-r["dna"] for r in obj.cache.values()], trials)])
            per_strategy[name] = {
                "regret_mean": {str(c): statistics.mean(cv[c - 1] for cv in curves) for c in checkpoints},
                "regret_std": {str(c): statistics.stdev(cv[c - 1] for cv in curves) if seeds > 1 else 0.0
                               for c in checkpoints},
                "found_optimum": {str(c): sum(cv[c - 1] <= 1e-9 for cv in curves) for c in checkpoints},
                "curves": curves,
            }
        out["budgets"][f"{f:g}"] = {"budget_mflops": budget / 1e6, "optimum": optimum, "strategies": per_strategy}
    return out


def write_report(payload: dict[str, Any], path: Path) -> None:
    """``path`` (.md) with the regret table and ``path`` (.png, .svg) with the regret curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cps = payload["checkpoints"]
    lines = ["# Search strategies: regret vs trials on the DNA tables (exact optimum known)", "",
             f"Command: `{payload['command']}`  ", f"Git commit: `{payload['git_commit']}`  ", "",
             f"Tables: `{payload['tables']}` ({payload['space']} space); score {payload['score']}. Regret = best "
             f"found - exact optimum, mean +- s.d. over {payload['seeds']} seeds (in brackets: seeds that found the "
             "optimum).", *([shared_note(payload)] if shared_note(payload) else []), ""]
    budgets = payload["budgets"]
    fig, axes = plt.subplots(1, len(budgets), figsize=(4.5 * len(budgets), 3.6), squeeze=False)
    for ax, (f, b) in zip(axes[0], budgets.items()):
        lines += [f"## Budget {float(f) * 100:.0f} % of the max arch ({b['budget_mflops']:.2f} MFLOPs; optimum "
                  f"{b['optimum']:.4f})", "", "| strategy | " + " | ".join(f"{c} trials" for c in cps) + " |",
                  "|---|" + "---|" * len(cps)]
        for name, s in b["strategies"].items():
            lines.append(f"| {name} | " + " | ".join(
                f"{s['regret_mean'][str(c)]:.4f} +- {s['regret_std'][str(c)]:.4f} ({s['found_optimum'][str(c)]})"
                for c in cps) + " |")
            curves = s["curves"]
            mean = [statistics.mean(cv[i] for cv in curves) for i in range(len(curves[0]))]
            ax.plot(range(1, len(mean) + 1), mean, label=name)
        lines.append("")
        ax.set(title=f"{float(f) * 100:.0f} % budget", xlabel="archs scored", ylabel="regret (mean over seeds)",
               xscale="log")
        ax.legend(fontsize=8)
    fig.tight_layout()
    for ext in ("png", "svg"):
        fig.savefig(path.with_suffix(f".{ext}"), dpi=120)
    plt.close(fig)
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
