"""``nas-kd acceptance``: at one budget, does the searched student beat the picks a user makes without search?

Five students under the band's budget B (``--band``, a fraction of the max arch's FLOPs), each trained
exactly like the ground truth (the recipe's distillation, ``kd`` column) with ``seeds`` seeds
(``acceptance.seeds``, 3 by default):

* ``searched``: the best arch of ``nas-kd search`` with the given evaluator and strategy on the
  study's supernet (search seed: the recipe's ``seed``);
* ``maxflops``: the arch with the most FLOPs under B (an evolution search maximising FLOPs, scoring
  ``acceptance.maxflops_trials`` archs);
* ``handcrafted``: uniform scaling, as a person designs a smaller net: one depth level for every stage
  and one level for every width / ratio choice, the pair with the most FLOPs that fits B;
* ``random_best``: of the band's first ``acceptance.random_pool`` (10) ground-truth archs (random, FLOPs in
  [``band_floor`` B, B]), the one with the best validation accuracy at seed 0 (what those trial trainings would
  pick). Seed 0 chose it, so it is held out: this pick is compared on seeds 1 .. ``seeds``;
* ``band_max``: the band's ground-truth arch with the most FLOPs (another "biggest that fits").

Seeds the ground truth already has are read from it; the others are trained here.

With ``--search-repeats R`` (``acceptance.search_repeats``) the search runs R times (search seeds ``seed`` ..
``seed`` + R - 1); every repeat's pick is trained with the same seeds, and the result reports how much the
searched student varies from search to search (``search_repeats``). The tests compare the first repeat.

Jobs go through the same queue and records as the ground truth (``<records>/../acceptance/``). The
result, with Welch t-tests of ``searched`` against each other pick, goes to ``--out`` (.json and .md).
"""
from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from typing import Any

import search_spaces
from nas_kd.config import AcceptanceConfig
from nas_kd.errors import UserError
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.search.plan import SearchPlan

from nas_kd.rankcorr.quality import difference_to_population, pooled_difference, repeats_difference_to_population
from nas_kd.stats import holm, pooled_t_test, welch
from nas_kd.rankcorr.ground_truth import (
    Study,
    arch_id,
    band_budget,
    job_key,
    study_bands,
    work_jobs,
)

OTHERS = ("maxflops", "handcrafted", "random_best", "band_max")  # the picks the searched student is compared with
SELECTION_SEED = 0  # the ground-truth seed whose validation accuracy picks random_best (held out of its comparison)


def handcrafted_arch(space, budget: float, steps: int = 20) -> dict[str, Any]:
    """The uniformly scaled arch with the most FLOPs under ``budget``: one relative position for every
    depth choice and one for every other choice (width, ratio, kernel, expand), on a grid of ``steps``."""
    def at(values, s):
        ordered = sorted(values)
        return ordered[round(s * (len(ordered) - 1))]

    best, best_flops = None, -1
    for i in range(steps + 1):
        for j in range(steps + 1):
            arch = space.canonical({label: at(values, (i if label.endswith(".depth") else j) / steps)
                                    for label, values in space.choices.items()})
            f = space.flops(arch)
            if best_flops < f <= budget:
                best, best_flops = arch, f
    if best is None:
        raise UserError(f"no uniformly scaled arch of {space.name} fits {budget / 1e6:.2f} MFLOPs")
    return best


def _search(study: Study, search: SearchPlan, out: Path, trials: int, budget: float, name: str, seed: int) -> dict:
    """The best arch of a search (the plan, its evaluator optimised alone, with the study's supernet, ``trials`` and
    ``budget``) with search seed ``seed`` (reused when its ``search.json`` exists)."""
    from nas_kd.search.run import run_search

    run = out / name
    if not (run / "search.json").exists():
        changes = {"checkpoint": study.cfg.supernet_run, "trials": trials, "budget_mflops": budget / 1e6}
        recorded = {**changes, "evaluator": search.names[0], "strategy": search.strategy_name, "extra_evaluators": []}
        job = study.job.derive(study.job.run.at(run), seed=seed,
                               config={f"search.{k}": v for k, v in recorded.items()})
        run_search(job, dataclasses.replace(search.with_settings(**changes), evaluators=search.evaluators[:1]))
    return json.loads((run / "search.json").read_text())["best"]["arch"]


def searched_run(band: str, evaluator: str, strategy: str) -> str:
    """The run name of an acceptance's (first) search, under the study's ``acceptance/`` folder."""
    return f"search-b{band}-{evaluator}-{strategy}"


def pick_seeds(name: str, seeds: int) -> list[int]:
    """The training seeds a pick is compared on: ``random_best`` skips the seed that chose it."""
    if name == "random_best":
        return [s for s in range(seeds + 1) if s != SELECTION_SEED]
    return list(range(seeds))


def picks(study: Study, search: SearchPlan, maxflops: SearchPlan, acceptance: AcceptanceConfig, band: str, out: Path,
          trials: int, repeats: int = 1) -> dict[str, dict]:
    """The students' archs (``random_best`` only once the band's first ``acceptance.random_pool`` archs have a kd
    ground truth at the selection seed); the search's repeats after the first are ``searched_r1`` ..."""
    pool = acceptance.random_pool
    space = search_spaces.get(study.space)
    budget = band_budget(space, float(band))
    seed = study.job.seed
    bands = study_bands(study)
    if band not in bands:
        raise UserError(f"--band {band}: not a band of the study ({', '.join(bands)})")
    candidates = []
    for arch in bands[band][:pool]:
        path = study.record_path(job_key(space.name, band, arch, "kd", SELECTION_SEED))
        if path.exists():
            candidates.append((json.loads(path.read_text())["val_acc"], arch))
    searched = searched_run(band, search.names[0], search.strategy_name)
    chosen = {
        "searched": _search(study, search, out, trials, budget, searched, seed),
        "maxflops": _search(study, maxflops, out, acceptance.maxflops_trials, budget, f"search-b{band}-maxflops", seed),
        "handcrafted": handcrafted_arch(space, budget),
        "band_max": bands[band][-1],  # the band's archs are sorted by FLOPs
    }
    for r in range(1, repeats):
        chosen[f"searched_r{r}"] = _search(study, search, out, trials, budget, f"{searched}-r{r}", seed + r)
    if len(candidates) == pool:  # else picked by a later run, once the ground truth has them
        chosen["random_best"] = max(candidates, key=lambda c: c[0])[1]
    return chosen


def run_acceptance(study: Study, search: SearchPlan, maxflops: SearchPlan, acceptance: AcceptanceConfig, *, band: str,
                   trials: int, result: str, seeds: int, search_repeats: int = 1,
                   queue: str | None = None, commit: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Train what is missing (through the job queue; searches and runs under the study job's run directory), then
    write ``result`` (.json and .md). ``search``: the searched student's search (its evaluator and strategy built);
    ``maxflops``: the FLOPs-maximising search; ``acceptance``: the recipe's section of that name."""
    if seeds < 2:  # before the searches that picking the students may run
        raise UserError(f"--seeds {seeds}: a mean +- std and a t-test need at least 2 seeds")
    if search_repeats < 1:
        raise UserError(f"--search-repeats {search_repeats}: at least 1")
    started, watch = origin(), Stopwatch()
    out = study.job.run.path / "acceptance"
    records = Path(study.cfg.records).parent / "acceptance"
    evaluator, strategy = search.names[0], search.strategy_name
    chosen = picks(study, search, maxflops, acceptance, band, out, trials, search_repeats)
    space = study.space
    jobs, where = {}, {}
    for name, arch in chosen.items():
        prefix = "searched" if name.startswith("searched") else name  # repeats that agree share their records
        for seed in pick_seeds(name, seeds):
            key = job_key(space, band, arch, "kd", seed)
            truth = study.record_path(key)
            if name in ("random_best", "band_max") and truth.exists():  # already in the ground truth
                where[(name, seed)] = truth
                continue
            jobs[f"acc-{prefix}-{key}"] = {"space": space, "band": band, "arch": arch, "column": "kd", "seed": seed}
            where[(name, seed)] = study.record_path(f"acc-{prefix}-{key}", records)
    progress = work_jobs(study, jobs, out, f"acceptance-{space}-{band}", records=records, queue=queue,
                         commit=commit, show_progress=show_progress)
    accs = {name: [json.loads(where[(name, s)].read_text())["heldout_acc"] for s in pick_seeds(name, seeds)
                   if where[(name, s)].exists()] for name in chosen}
    missing: dict[str, Any] = {n: seeds - len(a) for n, a in accs.items() if len(a) < seeds}
    if "random_best" not in chosen:
        missing["random_best"] = (f"its {acceptance.random_pool} candidates lack a kd seed-{SELECTION_SEED} "
                                  "ground truth: run nas-kd ground-truth further")
    if missing:
        return {"finished": False, "missing_seeds": missing, **progress}
    sp = search_spaces.get(space)
    compared = ["searched", *(n for n in OTHERS if n in chosen)]
    mean = {n: statistics.mean(a) for n, a in accs.items()}
    std = {n: statistics.stdev(a) for n, a in accs.items()}
    p_values = {n: welch(accs["searched"], accs[n]).p for n in compared[1:]}
    repeats = [n for n in chosen if n.startswith("searched")]
    payload = {
        "space": space, "band": band, "budget_mflops": band_budget(sp, float(band)) / 1e6,
        "evaluator": evaluator, "strategy": strategy, "trials": trials,
        "scored": json.loads((out / searched_run(band, evaluator, strategy) / "search.json").read_text())["scored"],
        "seeds": list(range(seeds)),
        "accuracy_kind": "held-out (test + validation) accuracy, last epoch, ground-truth schedule",
        "student_mflops": sp.flops(chosen["searched"]) / 1e6, "student_acc": mean["searched"],
        "student_acc_std": std["searched"], "random_best_acc": mean["random_best"],
        "handcrafted_acc": mean["handcrafted"], "maxflops_acc": mean["maxflops"], "band_max_acc": mean["band_max"],
        "p_value": max(p_values.values()), "p_values_welch": p_values,
        "picks": {n: {"arch": chosen[n], "arch_id": arch_id(chosen[n]), "mflops": sp.flops(chosen[n]) / 1e6,
                      "params": sp.params(chosen[n]), "seeds": pick_seeds(n, seeds), "accs": accs[n], "mean": mean[n],
                      "std": std[n]} for n in compared},
        "search_repeats": [{"search_seed": study.job.seed + i, "arch_id": arch_id(chosen[n]),
                            "mflops": sp.flops(chosen[n]) / 1e6, "accs": accs[n], "mean": mean[n], "std": std[n]}
                           for i, n in enumerate(repeats)],
        "search_repeat_sd": statistics.stdev(mean[n] for n in repeats) if len(repeats) > 1 else None,
    }
    payload = write_result(Path(f"{result}.json"), payload, watch.seconds(), started)  # a name may hold dots
    write_markdown(payload, Path(f"{result}.md"))
    return payload


def write_markdown(p: dict[str, Any], path: Path) -> None:
    """The acceptance table."""
    lines = [f"# Search acceptance: `{p['space']}` space, budget {p['budget_mflops']:.2f} MFLOPs "
             f"({float(p['band']) * 100:.0f} % of the max arch)", "",
             f"Command: `{p['command']}`  ", f"Git commit: `{p['git_commit']}`  ", "",
             f"Every student is trained like the ground truth ({p['accuracy_kind']}); the searched one is "
             f"`{p['strategy']}`'s best by `{p['evaluator']}` ({p.get('scored', 'not recorded how many')} archs scored, "
             f"{p['trials']} allowed). "
             f"`random_best` was chosen by its seed-{SELECTION_SEED} validation accuracy, so that seed is left out of "
             "its comparison.", "",
             "| student | MFLOPs | params | seeds | accuracy % (mean +- std) | per seed | Welch p vs searched |",
             "|---|---|---|---|---|---|---|"]
    for n, v in p["picks"].items():
        pv = p["p_values_welch"].get(n)
        lines.append(f"| {n} | {v['mflops']:.2f} | {v['params']:,} | {','.join(map(str, v['seeds']))} | {_mean_std(v)} | "
                     f"{', '.join(f'{100 * a:.2f}' for a in v['accs'])} | {f'{pv:.3f}' if pv is not None else '-'} |")
    best_other = max((n for n in p["picks"] if n != "searched"), key=lambda n: p["picks"][n]["mean"])
    c = welch(p["picks"]["searched"]["accs"], p["picks"][best_other]["accs"])
    lines += ["", f"Searched minus the best other pick ({best_other}): {100 * c.diff:+.2f} points (95 % interval "
              f"{100 * c.ci[0]:+.2f} to {100 * c.ci[1]:+.2f}), Welch p {c.p:.3f}; largest Welch p-value over the picks "
              f"{p['p_value']:.3f}. Uncorrected: the study's summary corrects them over the budgets (Holm)."]
    if len(p.get("search_repeats", [])) > 1:
        lines += ["", f"## The search repeated ({len(p['search_repeats'])} search seeds)", "",
                  "| search seed | arch | MFLOPs | accuracy % (mean +- std) |", "|---|---|---|---|"]
        lines += [f"| {r['search_seed']} | {r['arch_id']} | {r['mflops']:.2f} | {_mean_std(r)} |"
                  for r in p["search_repeats"]]
        lines += ["", f"{len({r['arch_id'] for r in p['search_repeats']})} distinct archs; s.d. of the repeats' means "
                      f"{100 * p['search_repeat_sd']:.2f} points."]
    path.write_text("\n".join(lines) + "\n")


def _mean_std(pick: dict[str, Any]) -> str:
    return f"{100 * pick['mean']:.2f} +- {100 * pick['std']:.2f}"


def summary_lines(run: Path, corrected: dict[str, Any] | None = None) -> list[str]:
    """A table of the acceptances written into ``run`` (``acceptance*.json``; none: no lines), for a study's README;
    with ``corrected`` (:func:`acceptance_statistics`), a second table of the corrected figures."""
    found = sorted(run.glob("acceptance*.json"))
    if not found:
        return []
    lines = ["## Search acceptance: the searched student vs the obvious picks (distilled alike)",
             "", "| file | band (MFLOPs) | evaluator | seeds | searched % | "
             + " | ".join(f"{n} % (Welch p)" for n in OTHERS) + " |", "|---|---|---|---|---|" + "---|" * len(OTHERS)]
    for path in found:
        p = json.loads(path.read_text())
        others = [f"{_mean_std(p['picks'][n])} ({p['p_values_welch'][n]:.3f})" if n in p["picks"] else "-" for n in OTHERS]
        lines.append(f"| [{path.stem}]({path.stem}.md) | {p['band']} ({p['budget_mflops']:.2f}) | {p['evaluator']} | "
                     f"{len(p['seeds'])} | {_mean_std(p['picks']['searched'])} | " + " | ".join(others) + " |")
    lines += ["", "Each file's .md has the archs, the per-seed figures and the command that regenerates it.", ""]
    if corrected and corrected["files"]:
        lines += ["### Corrected for the budgets tested", "",
                  "Searched minus the band's ground-truth mean: how much better than a random arch of the same band "
                  "(points +- s.e.). p-values: Welch's, then Holm-corrected across the budgets each method (evaluator + "
                  "strategy) was tested at (one file per budget, the one with the most seeds), then with the seed "
                  "variance pooled "
                  "over the band's ground-truth archs and the picks (Holm-corrected too).", "",
                  "| file | searched - band mean | " + " | ".join(f"vs {n}: Welch / Holm / pooled / pooled Holm"
                                                             for n in OTHERS) + " |",
                  "|---|---|" + "---|" * len(OTHERS)]
        for stem, f in corrected["files"].items():
            d = f["searched_minus_band_mean"]
            cells = []
            for n in OTHERS:
                if n not in f["welch_p"]:
                    cells.append("-")
                    continue
                holm_txt = (f"{f['holm_p'][n]:.3f}", f"{f['pooled_holm_p'][n]:.3f}") if "holm_p" in f else ("-", "-")
                cells.append(f"{f['welch_p'][n]:.3f} / {holm_txt[0]} / {f['pooled_p'][n]:.3f} / {holm_txt[1]}")
            lines.append(f"| {stem} | {d['diff']:+.2f} +- {d['se']:.2f} | " + " | ".join(cells) + " |")
        lines += [f"\nOver the {d['repeats']} search repeats of {stem} ({d['distinct']} distinct archs): searched minus "
                  f"band mean {d['diff']:+.2f} +- {d['se']:.2f} points." for stem, f in corrected["files"].items()
                  if (d := f.get("repeats_minus_band_mean"))]
        lines += [""] + [f"Pooled over the budgets {', '.join(e['budgets'])} (`{name}`): searched minus band mean "
                         f"{e['searched_minus_band_mean']['diff']:+.2f} +- {e['searched_minus_band_mean']['se']:.2f} points"
                         + (f"; averaged over the search repeats, {e['repeats_minus_band_mean']['diff']:+.2f} +- "
                            f"{e['repeats_minus_band_mean']['se']:.2f}" if "repeats_minus_band_mean" in e else "") + "."
                         for name, e in corrected["by_method"].items()] + [""]
    return lines


def acceptance_statistics(run: Path, baselines: dict[str, dict]) -> dict[str, Any]:
    """What the acceptances in ``run`` say once corrected, against the study's ground truth ``baselines`` (per band:
    ``truth``, the archs' seed means, and ``per_seed``):

    * per file: ``searched_minus_band_mean`` (the searched student's mean minus the mean of the band's
      ground-truth archs, with its standard error: how much better than a random arch of the same band), and per
      other pick ``pooled_p`` (the seed variance pooled over the band's ground-truth archs and every pick, trained
      alike) beside ``welch_p``; with several search repeats, ``repeats_minus_band_mean`` (the same difference
      averaged over the repeats, its error including the search's own variability);
    * per method (evaluator + strategy), over the budgets it was tested at (the file with the most seeds per band):
      ``holm_p`` and
      ``pooled_holm_p`` (Holm across those budgets, per compared pick), and ``searched_minus_band_mean`` pooled
      over the budgets (inverse-variance weighted), and so is ``repeats_minus_band_mean`` when every budget's file has
      search repeats. Files superseded by one with more seeds get no Holm figures.
    """
    files = {path.stem: json.loads(path.read_text()) for path in sorted(run.glob("acceptance*.json"))}
    per_file: dict[str, dict[str, Any]] = {}
    for stem, p in files.items():
        bl = baselines.get(p["band"])
        if bl is None:
            continue
        searched = p["picks"]["searched"]["accs"]
        others = [n for n in OTHERS if n in p["picks"]]
        groups = [*bl["per_seed"], *(p["picks"][n]["accs"] for n in others)]
        per_file[stem] = {
            "band": p["band"], "method": f"{p['evaluator']} + {p['strategy']}", "seeds": len(p["seeds"]),
            "searched_minus_band_mean": difference_to_population(searched, bl["truth"]),
            "welch_p": {n: p["p_values_welch"][n] for n in others},
            "pooled_p": {n: pooled_t_test(searched, p["picks"][n]["accs"], groups) for n in others},
        }
        repeats = p.get("search_repeats", [])
        if len(repeats) > 1:
            per_file[stem]["repeats_minus_band_mean"] = repeats_difference_to_population([r["accs"] for r in repeats],
                                                                                         bl["truth"])
    by_method: dict[str, dict[str, Any]] = {}
    for method in sorted({f["method"] for f in per_file.values()}):
        family: dict[str, str] = {}  # band -> the file with the most seeds
        for stem, f in per_file.items():
            if f["method"] == method and (f["band"] not in family or f["seeds"] > per_file[family[f["band"]]]["seeds"]):
                family[f["band"]] = stem
        for n in OTHERS:
            tested = {stem: per_file[stem] for stem in family.values() if n in per_file[stem]["welch_p"]}
            for key in ("welch", "pooled"):
                adjusted = holm({stem: f[f"{key}_p"][n] for stem, f in tested.items()})
                for stem, value in adjusted.items():
                    per_file[stem].setdefault("holm_p" if key == "welch" else "pooled_holm_p", {})[n] = value
        by_method[method] = {
            "budgets": sorted(family, key=float), "files": sorted(family.values()),
            "searched_minus_band_mean": pooled_difference([per_file[s]["searched_minus_band_mean"]
                                                           for s in family.values()]),
        }
        if all("repeats_minus_band_mean" in per_file[s] for s in family.values()):  # the search's own spread in
            by_method[method]["repeats_minus_band_mean"] = pooled_difference(
                [per_file[s]["repeats_minus_band_mean"] for s in family.values()])
    return {"files": per_file, "by_method": by_method}
