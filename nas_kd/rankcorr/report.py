"""Tables and plots of a search-quality study, drawn from its saved ``rankcorr.json`` and ``summary.json`` alone."""
from __future__ import annotations

import json
from pathlib import Path

from matplotlib import colormaps

from nas_kd.plots import save, subplots
from nas_kd.rankcorr.acceptance import summary_lines
from nas_kd.rankcorr.fitted import FOLDS
from nas_kd.rankcorr.quality import FLAT_CEILING

FORMATS = ("png", "svg")
FINDINGS = "findings.md"  # hand-written beside a study: what its numbers say, kept across regenerations


def _load(run: Path) -> tuple[dict, dict]:
    return json.loads((run / "rankcorr.json").read_text()), json.loads((run / "summary.json").read_text())


def plot_study(run: str | Path) -> list[Path]:
    """Per column: Kendall tau per band vs supernet epoch (with one epoch scored: the evaluators side by side with
    their 95 % intervals) with the noise ceiling drawn as a band, and the regret of each evaluator's pick per band
    beside random / max-FLOPs / max-params picks."""
    run = Path(run)
    d, _ = _load(run)
    files: list[Path] = []
    for column, c in d["columns"].items():
        bl, metrics = c["baselines"], c["metrics"]
        bands = sorted(bl, key=float)
        if not bands:
            continue
        epochs = sorted((e for e in metrics if metrics[e]), key=int)
        names = [n for n in d["evaluators"] if any(n in metrics[e].get(b, {}) for e in epochs for b in bands)]
        fig, axes = subplots(1, len(bands), figsize=(4.2 * len(bands), 3.6), squeeze=False, sharey=True)
        for ax, band in zip(axes[0], bands):
            ceiling = bl[band]["noise_ceiling"]
            if ceiling:
                ax.axhspan(*ceiling["tau_ci95"], color="gray", alpha=0.2, label="noise ceiling (95% CI)")
                ax.axhline(ceiling["tau"], color="gray", lw=1)
            if len(epochs) == 1:  # one checkpoint: the evaluators side by side, each with its 95 % interval
                shown = [n for n in names if n in metrics[epochs[0]].get(band, {})]
                for i, n in enumerate(shown):
                    m = metrics[epochs[0]][band][n]
                    lo, hi = m["kendall_tau_ci95"]
                    ax.errorbar(i, m["kendall_tau"], yerr=[[m["kendall_tau"] - lo], [hi - m["kendall_tau"]]], fmt="o",
                                ms=4, capsize=3, color=colormaps["tab20"](i % 20))
                ax.set_xticks(range(len(shown)), shown, rotation=60, fontsize=7)
                fig.suptitle(f"supernet epoch {epochs[0]}; bars: 95 % bootstrap intervals", fontsize=9)
            else:
                for i, n in enumerate(names):
                    eps = [e for e in epochs if n in metrics[e].get(band, {})]
                    ax.plot([int(e) for e in eps], [metrics[e][band][n]["kendall_tau"] for e in eps], "-o", ms=4,
                            color=colormaps["tab20"](i % 20), label=n)
                ax.set_xlabel("supernet epoch")
            ax.axhline(0, color="black", lw=0.5)
            ax.set_title(f"band {band} ({bl[band]['budget_mflops']:.1f} MFLOPs, {bl[band]['num_archs']} archs)", fontsize=9)
        axes[0][0].set_ylabel(f"Kendall tau vs ground truth ({column})")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        files += save(fig, run / f"tau_per_band_{column}", FORMATS)

        last = metrics[epochs[-1]] if epochs else {}
        fig, ax = subplots(figsize=(max(6.0, 0.9 * len(names) * len(bands) / 2), 3.8))
        width = 0.8 / max(1, len(names) + 3)
        for j, band in enumerate(bands):
            picks = {**{n: last.get(band, {}).get(n, {}).get("regret") for n in names},
                     "random (expected)": bl[band]["random_regret"], "max FLOPs": bl[band]["maxflops_regret"],
                     "max params": bl[band]["maxparams_regret"]}
            for i, (n, v) in enumerate(picks.items()):
                baseline = i >= len(names)
                color = ("0.55", "0.35", "0.15")[i - len(names)] if baseline else colormaps["tab20"](i % 20)
                if v is not None:
                    ax.bar(j + (i - len(picks) / 2) * width, v, width, color=color, label=n if j == 0 else None,
                           hatch="//" if baseline else None, edgecolor="white" if baseline else None)
        ax.set_xticks(range(len(bands)), [f"band {b}" for b in bands])
        ax.set_ylabel("regret of the top-1 pick (accuracy points)")
        ax.set_title(f"ground truth: {column}, supernet epoch {epochs[-1] if epochs else '-'}", fontsize=9)
        ax.legend(fontsize=6, ncol=2)
        files += save(fig, run / f"regret_{column}", FORMATS)
    return files


def write_report(run: str | Path) -> Path:
    """``README.md``: per ground-truth column and band, the noise and every evaluator's figures; the acceptances;
    then the study's hand-written ``findings.md``, if any, under its own heading; then the plots."""
    run = Path(run)
    d, summary = _load(run)
    lines = [f"# Search quality inside equal-cost bands: `{d['space']}` space", "",
             f"Command: `{summary['command']}`  ", f"Git commit: `{summary['git_commit']}`  ",
             f"Scoring wall time: {summary['wall_seconds']} s. Supernet: `{summary['supernet_run']}`. Ground truth: "
             f"{summary['ground_truth']['train_images']} training images, {summary['ground_truth']['epochs']} epochs, "
             f"seeds {summary['ground_truth']['seeds']}, held-out accuracy on test + validation images.", ""]
    c = d.get("compute") or {}
    if c.get("mean_train_seconds_per_job"):
        lines += [f"Compute plan: {c['jobs']} ground-truth jobs (archs x columns x seeds) x "
                  f"{c['mean_train_seconds_per_job']:.0f} s per job on average so far (one CPU thread, often shared) "
                  f"= about {c['estimated_cpu_hours_total']:.1f} CPU-hours; {c['finished']} finished. Jobs run in queue "
                  "order (the kd column first, each arch's seeds together), so a partial ground truth has whole seed "
                  "pairs in every band.", ""]
    for column, c in d["columns"].items():
        bl, metrics = c["baselines"], c["metrics"]
        epochs = sorted((e for e in metrics if metrics[e]), key=int)
        if not epochs:
            continue
        last = metrics[epochs[-1]]
        lines += [f"## Ground truth `{column}` (supernet epoch {epochs[-1]})", ""]
        for band in sorted(bl, key=float):
            b = bl[band]
            ceil = b["noise_ceiling"]
            ceil_txt = f"{ceil['tau']:.2f} [{ceil['tau_ci95'][0]:.2f}, {ceil['tau_ci95'][1]:.2f}]" if ceil else "-"
            pairs_txt = (f", mean of {ceil['seed_pairs']} seed pairs; the ground truth is the mean of the seeds, less noisy "
                         "than one, so an evaluator can pass it") if ceil and ceil.get("seed_pairs", 1) > 1 else ""
            lines += [f"### Band {band}: B = {b['budget_mflops']:.2f} MFLOPs, {b['num_archs']} archs in [{d.get('band_floor', 0.8):g} B, B]", "",
                      f"Noise ceiling (Kendall tau between two seeds{pairs_txt}): {ceil_txt}. Ground truth spans {b['truth_range']:.2f} points; "
                      + (f"pooled seed s.d. {b['seed_sd_pooled']:.2f} points, spread of the archs' true means "
                         f"{b['between_sd']:.2f}; ICC {b['icc']:.2f} [{b['icc_ci95'][0]:.2f}, {b['icc_ci95'][1]:.2f}] "
                         f"(the share of one seed's variance that is the arch's); against the {b['seeds']}-seed mean the "
                         f"evaluators are scored on, a perfect evaluator reaches tau {b['ceiling_vs_mean']:.2f}. "
                         if "icc" in b else "")
                      + 
                      f"Regret of a random pick {b['random_regret']:.2f}, of the max-FLOPs pick {b['maxflops_regret']:.2f}, "
                      f"of the max-params pick {b['maxparams_regret']:.2f} points."
                      + (f" **Flat band** (ceiling below {FLAT_CEILING}): its ground truth is mostly seed noise, so no "
                         "fraction of the ceiling is given." if not ceil or ceil["tau"] < FLAT_CEILING else ""), "",
                      "| evaluator | Kendall tau [95% CI] | tau - flops' [paired 95% CI] | fraction of ceiling | P@25% "
                      "| regret (points) |", "|---|---|---|---|---|---|"]
            for n, m in last.get(band, {}).items():
                frac = f"{m['fraction_of_ceiling']:.2f}" if m["fraction_of_ceiling"] is not None else "-"
                lo, hi = m["kendall_tau_ci95"]
                vs = m.get("tau_minus_flops")
                vs_txt = f"{vs['diff']:+.2f} [{vs['ci95'][0]:+.2f}, {vs['ci95'][1]:+.2f}]" if vs and n != "flops" else "-"
                lines.append(f"| {n} | {m['kendall_tau']:.2f} [{lo:.2f}, {hi:.2f}] | {vs_txt} | {frac} | "
                             f"{m['precision_at_25pct']:.2f} | {m['regret']:.2f} |")
            lines.append("")
    lines += ["`fitted`: ridge regression over all other scores, cross-validated: leave-one-band-out, or "
              f"{FOLDS}-fold inside a study's only band (never scored on its training archs).",
              "Figures: `tau_per_band_<column>.png`, `regret_<column>.png` (and .svg).", "", *summary_lines(run, summary.get("acceptances"))]
    if (run / FINDINGS).exists():
        lines += [f"## What the numbers say (hand-written: `{FINDINGS}`)", "", (run / FINDINGS).read_text().strip(), ""]
    path = run / "README.md"
    path.write_text("\n".join(lines) + "\n")
    plot_study(run)
    return path

