"""``nas-kd rank-corr``: inside each equal-cost band, how well does each evaluator rank the archs a user
could pick, against the trained ground truth, its seed-to-seed noise, and the obvious picks?

For every supernet checkpoint of ``rankcorr.supernet_run`` (a run directory with
``checkpoints/epochNNN.pt``, or one checkpoint file), every evaluator scores every band arch; the
training-free and cost evaluators do not depend on the checkpoint. Against each ground-truth column
(seed mean of the held-out accuracy), per band: Kendall tau with its bootstrap interval, Spearman,
tau as a fraction of the noise ceiling (Kendall tau between two seeds, averaged over seed pairs),
precision@top-25 % and the regret of the top-1 pick, beside the regret of a random pick, of the max-FLOPs
pick and of the max-params pick. ``fitted`` is a ridge combination of all the other scores, scored by
cross-validation only: leave-one-band-out, or k-fold inside a study's only band (:mod:`nas_kd.rankcorr.fitted`).

Writes ``rankcorr.json`` (everything; scores are cached by arch, so a rerun after more ground truth
lands only scores what is new), ``summary.json``, ``README.md`` and the plots into ``rankcorr.out``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

import search_spaces
from nas_kd.errors import UserError
from nas_kd.evaluators import EvalContext, Evaluator, score_archs
from nas_kd.provenance import Stopwatch, origin, write_result, write_text_atomic
from nas_kd.rankcorr.acceptance import acceptance_statistics
from nas_kd.rankcorr.fitted import FOLDS, cross_validated, k_fold
from nas_kd.rankcorr.ground_truth import Study, arch_id, band_budget, collect_ground_truth, plan, study_bands
from nas_kd.rankcorr.quality import (
    band_metrics,
    noise_ceiling,
    paired_tau_difference,
    random_regret,
    regret,
    variance_components,
)

FITTED = "fitted"


def epoch_checkpoints(supernet_run: str | Path) -> dict[int, Path]:
    """``{epoch: path}``: ``checkpoints/epochNNN.pt`` of a supernet run directory, or one checkpoint file
    (its recorded epoch)."""
    path = Path(supernet_run)
    if path.is_file():
        from nas_kd.checkpoint import load_checkpoint

        return {int(load_checkpoint(path).get("epoch") or 0): path}
    found = {}
    for p in sorted((path / "checkpoints").glob("epoch*.pt")):
        m = re.fullmatch(r"epoch(\d+)\.pt", p.name)
        if m:
            found[int(m.group(1))] = p
    if not found:
        raise UserError(f"rankcorr.supernet_run {path}: neither a checkpoint file nor a run with checkpoints/epochNNN.pt "
                        "(train the supernet with supernet.keep_epoch_checkpoints: true)")
    return found


def ground_truth_table(study: Study) -> dict[str, dict[str, dict[str, Any]]]:
    """``{column: {band: {arch id: {"seeds": {seed: acc}, "se": {seed: s.e.}}}}}`` from the committed records."""
    table: dict = {}
    for r in collect_ground_truth(study):
        cell = table.setdefault(r["column"], {}).setdefault(r["band"], {}).setdefault(arch_id(r["arch"]), {"seeds": {}, "se": {}})
        cell["seeds"][str(r["seed"])] = r["heldout_acc"]
        cell["se"][str(r["seed"])] = r["heldout_se"]
    return table


def _context(study: Study, net: Any, device: Any) -> EvalContext:
    """The evaluators' context of the supernet ``net`` (on ``device``) for the study's probe and teacher."""
    job, cfg = study.job, study.cfg
    return EvalContext.build(net, job.teacher.module().to(device), job.data, teacher_stages=job.teacher.stages,
                             probe_size=cfg.probe_size, bn_batches=cfg.bn_batches, batch_size=job.batching.batch_size,
                             seed=job.seed, channels_last=job.train.channels_last, dna_tables=cfg.dna_tables)


def checkpoint_taus(study: Study, checkpoint: str | Path, evaluators: list[Evaluator],
                    column: str = "kd") -> dict[str, dict[str, float]]:
    """``{band: {evaluator: Kendall tau}}``: the evaluators scored on the supernet ``checkpoint`` against the study's
    ground truth (``column``, the archs with every seed of ``rankcorr.seeds``), for comparing supernets."""
    from nas_kd.checkpoint import load_supernet
    from nas_kd.device import resolve_device
    from nas_kd.rankcorr.stats import kendall_tau

    gt = ground_truth_table(study).get(column, {})
    seeds = [str(s) for s in study.cfg.seeds]
    device = resolve_device(study.job.train.device)
    ctx = _context(study, load_supernet(checkpoint).to(device), device)
    out = {}
    for band, archs in study_bands(study).items():
        cells = gt.get(band, {})
        kept = [a for a in archs if all(s in cells.get(arch_id(a), {"seeds": {}})["seeds"] for s in seeds)]
        truth = [float(np.mean([cells[arch_id(a)]["seeds"][s] for s in seeds])) for a in kept]
        rows = score_archs(ctx, kept, evaluators)
        out[band] = {ev.name: kendall_tau([r[ev.name] for r in rows], truth) for ev in evaluators}
    return out


def _score(study: Study, evaluators: list[Evaluator], bands: dict[str, list[dict]], cache: dict,
           save: Callable[[], None], show_progress: bool) -> dict:
    """``{epoch: {evaluator: {arch id: score}}}`` for the study's checkpoints (``rankcorr.epochs``, or all),
    scoring only what ``cache`` lacks. ``cache`` (``{"scores": ..., "checkpoints": {epoch: sha256}}``) is updated
    in place and ``save``d after each scored epoch; an epoch whose checkpoint file changed keeps only the scores
    that ignore the supernet's weights."""
    import hashlib

    from nas_kd.checkpoint import load_supernet
    from nas_kd.device import resolve_device

    cfg = study.cfg
    by_name = {ev.name: ev for ev in evaluators}
    checkpoint_free = {n for n, ev in by_name.items() if not ev.reads_supernet}  # same at every epoch
    archs = {arch_id(a): a for band in bands.values() for a in band}
    scores, digests = cache.setdefault("scores", {}), cache.setdefault("checkpoints", {})
    device = resolve_device(study.job.train.device)
    free_done: dict[str, dict[str, float]] = {}
    if Path(cfg.supernet_run).exists() or not scores:
        checkpoints: dict[int, Path | None] = dict(epoch_checkpoints(cfg.supernet_run))
    else:  # a clone without the (uncommitted) supernet run: the cached scores are all there is
        checkpoints = {int(e): None for e in scores}
    if cfg.epochs is not None:
        missing = [e for e in cfg.epochs if e not in checkpoints]
        if missing:
            raise UserError(f"rankcorr.epochs: no supernet checkpoint (or cached scores) for epoch(s) {missing} in "
                            f"{cfg.supernet_run}; it has epochs {sorted(checkpoints)}")
        checkpoints = {e: checkpoints[e] for e in cfg.epochs}
    for epoch, path in checkpoints.items():
        have = scores.setdefault(str(epoch), {})
        if path is not None:
            with open(path, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            if digests.get(str(epoch), digest) != digest:  # another supernet was scored as this epoch
                for n in [n for n in have if n not in checkpoint_free]:
                    del have[n]
            digests[str(epoch)] = digest
        todo = {n: [a for a in archs if a not in have.get(n, {})] for n in by_name}
        for n in list(todo):
            if n in checkpoint_free and n in free_done:  # identical at every checkpoint
                have.setdefault(n, {}).update(free_done[n])
                todo[n] = [a for a in archs if a not in have[n]]
        if not any(todo.values()):
            free_done.update({n: have[n] for n in checkpoint_free})
            continue
        if path is None:
            raise UserError(f"rankcorr.supernet_run {cfg.supernet_run} does not exist and epoch {epoch} has archs to "
                            "score; train that supernet first (the command is in the study recipe's header)")
        net = load_supernet(path).to(device)
        if net.space.name != study.space:
            raise UserError(f"rankcorr.supernet_run {path} is a {net.space.name!r} supernet, but the study's archs come "
                            f"from student.space {study.space!r}")
        ctx = _context(study, net, device)
        names = [n for n in by_name if todo[n]]
        ids = sorted({a for n in names for a in todo[n]})
        rows = score_archs(ctx, [archs[a] for a in ids], [by_name[n] for n in names], show_progress=show_progress)
        for a, row in zip(ids, rows):
            for n in names:
                have.setdefault(n, {})[a] = row[n]
        free_done.update({n: have[n] for n in checkpoint_free})
        save()
    return {str(e): scores[str(e)] for e in checkpoints}


def _column_metrics(study: Study, evaluator_names: list[str], bands, gt_col, scores, resamples) -> tuple[dict, dict]:
    """Per band: baselines and noise; per epoch and band: every evaluator's metrics (plus ``fitted``)."""
    space = search_spaces.get(study.space)
    seeds = [str(s) for s in study.cfg.seeds]
    seed = study.job.seed
    baselines, kept, ceiling_tau = {}, {}, {}
    for band, archs in bands.items():
        cells = gt_col.get(band, {})
        ids = [arch_id(a) for a in archs if all(s in cells.get(arch_id(a), {"seeds": {}})["seeds"] for s in seeds)]
        if len(ids) < 4:
            continue
        per_seed = np.array([[cells[a]["seeds"][s] for s in seeds] for a in ids])
        truth = per_seed.mean(1)
        by_id = {arch_id(a): a for a in archs}
        flops = [space.flops(by_id[a]) for a in ids]
        params = [space.params(by_id[a]) for a in ids]
        ceiling = noise_ceiling(per_seed, resamples, seed) if len(seeds) > 1 else None
        baselines[band] = {
            "budget_mflops": band_budget(space, float(band)) / 1e6, "num_archs": len(ids), "arch_ids": ids,
            "truth": truth.tolist(), "per_seed": per_seed.tolist(), "mflops": [f / 1e6 for f in flops],
            "noise_ceiling": ceiling, "params": params,
            **(variance_components(per_seed) if len(seeds) > 1 else
               {"truth_range": 100 * float(truth.max() - truth.min())}),
            "random_regret": random_regret(truth), "maxflops_regret": regret(flops, truth),
            "maxparams_regret": regret(params, truth),
        }
        kept[band], ceiling_tau[band] = ids, (ceiling or {}).get("tau", 0.0)
    metrics = {}
    for epoch, by_eval in scores.items():
        per_band = {}
        names = [n for n in evaluator_names if n in by_eval]
        for band, ids in kept.items():
            if not all(a in by_eval[n] for n in names for a in ids):
                continue
            bl = baselines[band]
            per_band[band] = {n: band_metrics([by_eval[n][a] for a in ids], bl["truth"], ceiling_tau[band],
                                              resamples, seed) for n in names}
            for n in names:  # does it rank better than the cost itself? (paired over the same resampled archs)
                for cost in ("mflops", "params"):
                    per_band[band][n][f"tau_minus_{'flops' if cost == 'mflops' else cost}"] = paired_tau_difference(
                        [by_eval[n][a] for a in ids], bl[cost], bl["truth"], resamples, seed)
        feats = {b: np.array([[by_eval[n][a] for n in names] for a in kept[b]]) for b in per_band}
        truths = {b: np.array(baselines[b]["truth"]) for b in per_band}
        preds = cross_validated(feats, truths) if len(per_band) >= 2 else \
            {b: k_fold(feats[b], truths[b], seed=seed) for b in per_band if len(truths[b]) >= 2 * FOLDS}
        for b, pred in preds.items():
            per_band[b][FITTED] = band_metrics(pred.tolist(), truths[b], ceiling_tau[b], resamples, seed)
        metrics[epoch] = per_band
    return baselines, metrics


def run_rank_corr(study: Study, show_progress: bool = True) -> dict[str, Any]:
    """Score, measure and report the study into ``rankcorr.out``; returns ``summary.json``."""
    cfg = study.cfg
    started, watch = origin(), Stopwatch()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    bands = study_bands(study)
    gt = ground_truth_table(study)
    if not gt:
        raise UserError(f"{cfg.records}: no ground-truth records yet; run `nas-kd ground-truth` with this recipe first")
    data_path = out / "rankcorr.json"
    saved = json.loads(data_path.read_text()) if data_path.exists() else {}
    cache = {k: saved[k] for k in ("scores", "checkpoints") if k in saved}
    evaluators = list(study.evaluators)
    names = [ev.name for ev in evaluators]
    scores = _score(study, evaluators, bands, cache, lambda: write_text_atomic(data_path, json.dumps(cache) + "\n"),
                    show_progress)
    columns = {c: _column_metrics(study, names, bands, gt[c], scores, cfg.bootstrap) for c in cfg.columns if c in gt}
    records = collect_ground_truth(study)
    per_job = [r["train_wall_seconds"] for r in records if "train_wall_seconds" in r]
    jobs = len(plan(study))
    compute = {"jobs": jobs, "finished": len(records),
               "mean_train_seconds_per_job": sum(per_job) / len(per_job) if per_job else None,
               "estimated_cpu_hours_total": jobs * sum(per_job) / len(per_job) / 3600 if per_job else None}
    record = {"space": study.space, "compute": compute, "band_floor": cfg.band_floor,
              "bands": {b: [arch_id(a) for a in archs] for b, archs in bands.items()},
              "archs": {arch_id(a): a for archs in bands.values() for a in archs}, **cache,
              "columns": {c: {"baselines": bl, "metrics": m} for c, (bl, m) in columns.items()},
              "evaluators": [*names, FITTED]}
    write_result(data_path, record, watch.seconds(), started)
    summary = summarise(record, study)
    main = summary["main_column"]
    if main is not None:
        summary["acceptances"] = acceptance_statistics(out, record["columns"][main]["baselines"])
    summary = write_result(out / "summary.json", summary, watch.seconds(), started)
    from nas_kd.rankcorr.report import write_report

    write_report(out)
    return summary


def summarise(record: dict[str, Any], study: Study) -> dict[str, Any]:
    """The headline numbers per space and band, for the main column (the first one with results) and the
    last scored epoch; every column's figures under ``by_column``."""
    space = record["space"]
    by_column = {}
    for column, d in record["columns"].items():
        bl, metrics = d["baselines"], d["metrics"]
        epochs = sorted((e for e in metrics if metrics[e]), key=int)
        last = metrics[epochs[-1]] if epochs else {}
        by_column[column] = {
            "epoch": int(epochs[-1]) if epochs else None,
            "noise_ceiling": {space: {b: (v["noise_ceiling"] or {}).get("tau") for b, v in bl.items()}},
            "kendall_tau_band": {space: {b: {n: m["kendall_tau"] for n, m in last.get(b, {}).items()} for b in bl}},
            "fraction_of_ceiling": {space: {b: {n: m["fraction_of_ceiling"] for n, m in last.get(b, {}).items()} for b in bl}},
            "precision_at_25pct": {space: {b: {n: m["precision_at_25pct"] for n, m in last.get(b, {}).items()} for b in bl}},
            "regret": {space: {b: {n: m["regret"] for n, m in last.get(b, {}).items()} for b in bl}},
            "random_regret": {space: {b: v["random_regret"] for b, v in bl.items()}},
            "maxflops_regret": {space: {b: v["maxflops_regret"] for b, v in bl.items()}},
            "maxparams_regret": {space: {b: v["maxparams_regret"] for b, v in bl.items()}},
            "num_archs": {space: {b: v["num_archs"] for b, v in bl.items()}},
            **{key: {space: {b: v.get(key) for b, v in bl.items()}}
               for key in ("seed_sd_pooled", "icc", "icc_ci95", "ceiling_vs_mean")},
            **{key: {space: {b: {n: m.get(key) for n, m in last.get(b, {}).items()} for b in bl}}
               for key in ("tau_minus_flops", "tau_minus_params")},
        }
    main = next((c for c in study.cfg.columns if c in by_column), None)
    return {"main_column": main, **(by_column.get(main) or {}), "by_column": by_column,
            "ground_truth": {"epochs": study.job.train.epochs, "train_images": study.job.batching.limit_train,
                             "seeds": study.cfg.seeds, "distill": [t.spec() for t in study.terms],
                             "ce_weight": study.ce_weight},
            "supernet_run": study.cfg.supernet_run}
