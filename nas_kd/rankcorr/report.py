"""Tables and plots of a rank-correlation study, drawn from its saved ``rankcorr.json`` alone."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt

from nas_kd.plots import save

FORMATS = ("png", "svg")


def plot_study(run: str | Path) -> list[Path]:
    """Draw the three figures of the study in ``run`` (PNG and SVG); returns the files."""
    run = Path(run)
    d = json.loads((run / "rankcorr.json").read_text())
    gt, scores, stats, names = d["ground_truth"], d["scores"], d["stats"], d["evaluators"]
    epochs = sorted(stats, key=int)
    files: list[Path] = []

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, n in enumerate(names):
        eps = [e for e in epochs if n in stats[e]]
        tau = [stats[e][n]["kendall_tau"] for e in eps]
        lo = [stats[e][n]["kendall_tau_ci95"][0] for e in eps]
        hi = [stats[e][n]["kendall_tau_ci95"][1] for e in eps]
        x = [int(e) for e in eps]
        ax.plot(x, tau, "-o", ms=3, color=f"C{i}", label=n)
        ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.12)
    ax.axhline(0, color="gray", lw=0.5)
    ax.set_xlabel("supernet epoch")
    ax.set_ylabel("Kendall tau vs stand-alone accuracy")
    ax.set_title(f"{len(gt)} archs; bands: bootstrap 95% intervals")
    ax.legend(fontsize=8)
    files += save(fig, run / "rank_corr_vs_epoch", FORMATS)

    last = epochs[-1]
    names = [n for n in names if n in stats[last]]
    truth = [g["test_acc"] for g in gt]
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for ax, n in zip(axes.flat, names):
        ax.scatter(scores[last][f"{n}_raw"], [100 * t for t in truth], s=12)
        ax.set_title(f"{n}: tau = {stats[last][n]['kendall_tau']:.2f}", fontsize=9)
        ax.set_xlabel(f"{n} (raw)")
        ax.set_ylabel("stand-alone test acc (%)")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle(f"supernet epoch {last}", fontsize=10)
    files += save(fig, run / "scatter_final_epoch", FORMATS)

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.scatter([g["mflops"] for g in gt], [100 * t for t in truth], s=14, color="gray", label="ground truth")
    for i, n in enumerate(names):
        pick = max(range(len(gt)), key=lambda k: scores[last][n][k])
        ax.scatter([gt[pick]["mflops"]], [100 * truth[pick]], marker="*", s=150, color=f"C{i}",
                   label=f"pick of {n}", zorder=5)
    ax.set_xlabel("MFLOPs")
    ax.set_ylabel("stand-alone test acc (%)")
    ax.legend(fontsize=7)
    files += save(fig, run / "gt_acc_vs_mflops", FORMATS)
    return files


def write_report(run: str | Path) -> Path:
    """``README.md``: evaluator x epoch table (Kendall tau, Spearman, weighted tau, precision@10%) and provenance."""
    run = Path(run)
    d = json.loads((run / "rankcorr.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    stats, names = d["stats"], d["evaluators"]
    epochs = sorted(stats, key=int)
    lines = [f"# Rank correlation: {summary['num_archs']} archs of `{summary['space']}`", "",
             f"Command: `{summary['command']}`  ", f"Git commit: `{summary['git_commit']}`  ",
             f"Wall time of the scoring: {summary['wall_seconds']} s; ground-truth training: "
             f"{summary['ground_truth_wall_seconds_total']} s in all.", "",
             "| evaluator | epoch | Kendall tau [95% CI] | Spearman | weighted tau | precision@10% |",
             "|---|---|---|---|---|---|"]
    for n in names:
        for e in [e for e in epochs if n in stats[e]]:
            s = stats[e][n]
            lo, hi = s["kendall_tau_ci95"]
            lines.append(f"| {n} | {e} | {s['kendall_tau']:.3f} [{lo:.2f}, {hi:.2f}] | {s['spearman']:.3f} | "
                         f"{s['weighted_tau']:.3f} | {s['precision_at_10pct']:.2f} |")
    names = [n for n in names if n in stats[epochs[-1]]]
    lines += ["", "Kendall tau within the top-n archs (by ground truth), last epoch:", "",
              "| evaluator | " + " | ".join(f"top {k}" for k in stats[epochs[-1]][names[0]]["top_n_kendall"]) + " |",
              "|---|" + "---|" * len(stats[epochs[-1]][names[0]]["top_n_kendall"])]
    for n in names:
        tn = stats[epochs[-1]][n]["top_n_kendall"]
        lines.append(f"| {n} | " + " | ".join(f"{v:.3f}" for v in tn.values()) + " |")
    lines += ["", "Figures: `rank_corr_vs_epoch.png`, `scatter_final_epoch.png`, `gt_acc_vs_mflops.png` (and .svg)."]
    path = run / "README.md"
    path.write_text("\n".join(lines) + "\n")
    plot_study(run)
    return path
