"""``nas-kd rank-corr``: score the study's archs with every evaluator at every saved supernet epoch and
compare with the stand-alone ground truth.

Writes ``rankcorr.json`` (ground truth, scores per epoch and evaluator, statistics with bootstrap
95 % intervals, top-n correlations), ``summary.json``, ``README.md`` (tables) and the plots
(``nas-kd plot --run DIR`` redraws them from ``rankcorr.json``). Scores of an (epoch, evaluator)
already in ``rankcorr.json`` are reused, so a rerun after adding an evaluator or an epoch only
computes what is new.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from nas_kd.config import Recipe
from nas_kd.evaluators import EVALUATORS, EvalContext, score_archs
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.rankcorr.ground_truth import collect_ground_truth
from nas_kd.rankcorr.stats import STATS, bootstrap_interval, top_n_kendall
from nas_kd.supernet import load_supernet
from nas_kd.teacher import load_teacher
from nas_kd.train.common import resolve_device
from nas_kd.train.setup import load_data

DNA = {"dna", "dna-raw"}  # scored from blockwise tables, which exist only for some epochs


def epoch_checkpoints(supernet_run: str | Path) -> dict[int, Path]:
    """``{epoch: path}`` of ``checkpoints/epochNNN.pt`` in a supernet run directory."""
    found = {}
    for p in sorted((Path(supernet_run) / "checkpoints").glob("epoch*.pt")):
        m = re.fullmatch(r"epoch(\d+)\.pt", p.name)
        if m:
            found[int(m.group(1))] = p
    if not found:
        raise ValueError(f"{supernet_run}: no checkpoints/epochNNN.pt (train the supernet with "
                         "supernet.keep_epoch_checkpoints: true)")
    return found


def compute_stats(scores: list[float], truth: list[float], resamples: int, seed: int) -> dict[str, Any]:
    """Every statistic of :data:`STATS` with its bootstrap interval, plus top-n Kendall taus."""
    out: dict[str, Any] = {}
    for name, fn in STATS.items():
        out[name] = fn(scores, truth)
        out[f"{name}_ci95"] = bootstrap_interval(fn, scores, truth, resamples, seed)
    n = len(truth)
    out["top_n_kendall"] = {str(k): v for k, v in top_n_kendall(scores, truth, sorted({n, n // 2, n // 4, 8})).items()}
    return out


def run_rank_corr(recipe: Recipe, show_progress: bool = True) -> dict[str, Any]:
    """Run the study of ``recipe.rankcorr`` into ``<run.out_dir>/<run.name>/``; returns ``summary.json``."""
    cfg = recipe.rankcorr
    started, watch = origin(), Stopwatch()
    for n in cfg.evaluators:
        EVALUATORS.get(n)
    out = Path(recipe.run.out_dir) / recipe.run.name
    gt = collect_ground_truth(recipe, out)
    if len(gt) < cfg.num_archs:
        raise ValueError(f"{out}/ground_truth: {len(gt)} of {cfg.num_archs} archs finished; "
                         "run `nas-kd ground-truth` with this recipe first")
    truth = [g["test_acc"] for g in gt]
    data_path = out / "rankcorr.json"
    saved = json.loads(data_path.read_text()) if data_path.exists() else {}
    scores: dict[str, dict[str, list]] = saved.get("scores", {})
    data = load_data(recipe)
    device = resolve_device(recipe.train.device)
    teacher = load_teacher(recipe.teacher, data.num_classes, data.in_channels).to(device)
    for epoch, path in epoch_checkpoints(cfg.supernet_run).items():
        tables = Path(cfg.dna_run) / "tables" / f"epoch{epoch:03d}.json" if cfg.dna_run else None
        has_tables = tables is not None and tables.exists()
        todo = [n for n in cfg.evaluators if n not in scores.get(str(epoch), {}) and (has_tables or n not in DNA)]
        if not todo:
            continue
        net = load_supernet(path).to(device)
        ctx = EvalContext.build(net, teacher, data, teacher_stages=recipe.teacher.stages, probe_size=cfg.probe_size,
                                bn_batches=cfg.bn_batches, batch_size=recipe.data.batch_size, seed=recipe.seed,
                                dna_tables=str(tables) if has_tables else None)
        rows = score_archs(ctx, [g["arch"] for g in gt], todo, show_progress=show_progress)
        scores.setdefault(str(epoch), {}).update({n: [r[n] for r in rows] for n in todo})
        scores[str(epoch)].update({f"{n}_raw": [r[f"{n}_raw"] for r in rows] for n in todo})
        data_path.write_text(json.dumps({"ground_truth": gt, "scores": scores}) + "\n")  # progress survives a kill
    stats = {ep: {n: compute_stats(s[n], truth, cfg.bootstrap, recipe.seed) for n in cfg.evaluators if n in s}
             for ep, s in scores.items()}
    epochs = sorted(stats, key=int)
    record = {"ground_truth": gt, "scores": scores, "stats": stats, "evaluators": cfg.evaluators,
              "epochs": [int(e) for e in epochs]}
    write_result(data_path, record, watch.seconds(), started)
    from nas_kd.rankcorr.report import write_report

    summary = {
        "num_archs": len(gt), "space": recipe.student.space, "supernet_run": cfg.supernet_run,
        "ground_truth_epochs": recipe.train.epochs, "ground_truth_distill": recipe.distill,
        "ground_truth_wall_seconds_total": round(sum(g["wall_seconds"] for g in gt), 1),
        "epochs": [int(e) for e in epochs],
        "kendall_tau_final": {n: stats[epochs[-1]][n]["kendall_tau"] for n in cfg.evaluators if n in stats[epochs[-1]]},
        "spearman_final": {n: stats[epochs[-1]][n]["spearman"] for n in cfg.evaluators if n in stats[epochs[-1]]},
    }
    summary = write_result(out / "summary.json", summary, watch.seconds(), started)
    write_report(out)
    return summary
