"""``nas-kd search``: score archs of a trained supernet under a FLOPs budget and write the ranked results.

A killed search run again with the same command scores nothing twice: every scored candidate is appended to
``scored-<key>.jsonl`` as it is scored and read back first (the key hashes everything a score depends on: the
supernet file, evaluators, probe, data, teacher, seed) (seeded strategies then replay the same
proposals and end where an uninterrupted search ends). Outputs in the run directory: ``candidates.jsonl`` and
``candidates.csv`` (arch, MFLOPs, params and
every evaluator's oriented and raw score, best first), ``best_arch.json``, ``pareto.png`` and
``search.json`` (settings, best arch, counts, command, git commit, wall time) and ``config.yaml``
(the resolved recipe, which ``nas-kd export --run`` reuses).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nas_kd.config import SearchConfig
from nas_kd.device import resolve_device
from nas_kd.errors import BudgetError, UserError
from nas_kd.evaluators import EvalContext, score_archs
from nas_kd.latency import anchored_ms, load_table, measured_ms, reanchored, require_match
from nas_kd.plots import pareto_front, pareto_plot
from nas_kd.provenance import Stopwatch, origin, write_json_atomic, write_result, write_text_atomic
from nas_kd.job import Job, RunSpec
from nas_kd.locks import dir_locked
from nas_kd.runs import ScalarWriter, write_config
from nas_kd.search.objective import Objective
from nas_kd.search.plan import SearchPlan
from nas_kd.search.strategies import SearchInputs
from nas_kd.students import resolve_arch
from nas_kd.checkpoint import load_checkpoint, load_supernet
from nas_kd.supernet import Supernet
from search_spaces import StagedSpace, from_meta


REANCHORED = "latency_table_reanchored.json"  # a measured-budget search's table at the machine's speed (latency.reanchored)

class _Setting:
    """What a search and its report share: the evaluators' names, the searchable supernet (or space), the budget,
    the latency table, the output directory, the study's name and storage."""

    def __init__(self, plan: SearchPlan, run: RunSpec) -> None:
        cfg = plan.cfg
        self.evaluators, self.names, self.strategy = list(plan.evaluators), plan.names, plan.strategy_name
        self.net = load_searchable(cfg.checkpoint)
        self.space = space = self.net.space if isinstance(self.net, Supernet) else self.net
        self.budget = (cfg.budget_mflops * 1e6) if cfg.budget_mflops is not None else space.flops(space.max_arch())
        try:
            space.check_budget(self.budget)
        except BudgetError as e:
            raise BudgetError(f"search.budget_mflops: {e}") from None
        largest = space.flops(space.max_arch())
        if cfg.budget_mflops is not None and self.budget > largest:  # allowed, but say it is no budget at all
            print(f"search.budget_mflops {cfg.budget_mflops:g}: above the largest {space.name} arch "
                  f"({largest / 1e6:.3f} MFLOPs), so it does not constrain the search", file=sys.stderr)
        self.table = load_table(cfg.latency_table) if cfg.latency_table else None
        if cfg.budget_ms is not None and cfg.budget_arch is not None:
            raise UserError("search.budget_ms and search.budget_arch both set a latency budget: give one")
        for key in ("budget_ms", "budget_arch"):
            if getattr(cfg, key) is not None and self.table is None:
                raise UserError(f"search.{key} needs search.latency_table (make one with nas-kd latency-table)")
        reference = None if cfg.budget_arch is None else resolve_arch(space, cfg.budget_arch)
        if self.table is not None:
            require_match(space, self.table)
        self.out = out = run.path
        out.mkdir(parents=True, exist_ok=True)
        write_config(run.config, out / "config.yaml")
        if cfg.budget_ms is not None or reference is not None:  # the table at this machine's speed now, kept for a resumed search
            anchored = out / REANCHORED
            if not anchored.exists():
                write_json_atomic(anchored, reanchored(space, self.table, cfg.budget_ms, reference))
            self.table = load_table(anchored)
            cfg = dataclasses.replace(cfg, budget_ms=self.table["reanchored"]["budget_ms"])  # budget_arch's, timed
        self.cfg = cfg
        self.study_name = cfg.study_name or f"{self.names[0]}-{self.strategy}-{self.budget / 1e6:.3f}" + \
            (f"-{cfg.budget_ms:g}ms" if cfg.budget_ms is not None else "")
        self.storage = cfg.storage or f"sqlite:///{(out / 'study.db').resolve()}"


def search_report(plan: SearchPlan, run: RunSpec) -> dict[str, Any]:
    """Score nothing: rewrite the outputs of the search ``plan`` in ``run`` from the rows of its shared Optuna study
    (``search.storage`` and the study name), e.g. after several workers finished; returns ``search.json``."""
    started, watch = origin(), Stopwatch()
    with dir_locked(run.path):
        s = _Setting(plan, run)
        rows = _study_report(s.strategy, s.storage, s.study_name, s.names[0], s.budget, s.cfg.budget_ms)
        return _write_outputs(s.cfg, rows, s, started, watch)


def run_search(job: Job, plan: SearchPlan, *, show_progress: bool = True) -> dict[str, Any]:
    """Run the search ``plan`` (a ``search`` section with its evaluators and strategy built) with the job's data and
    teacher, and write its outputs to the job's run directory (locked while it runs: a second search into it is
    refused; workers of one shared study on one machine each take their own run name); returns ``search.json``."""
    with dir_locked(job.run.path):
        return _run_search(job, plan, show_progress)


def _run_search(job: Job, plan: SearchPlan, show_progress: bool) -> dict[str, Any]:
    started, watch = origin(), Stopwatch()
    s = _Setting(plan, job.run)
    cfg = s.cfg
    evaluators, names, net, space, budget, out = s.evaluators, s.names, s.net, s.space, s.budget, s.out
    primary = names[0]
    data = job.data
    device = resolve_device(job.train.device)
    teacher = job.teacher.module().to(device)
    ctx = EvalContext.build(net.to(device) if isinstance(net, Supernet) else space, teacher, data,
                            teacher_stages=job.teacher.stages, probe_size=cfg.probe_size, bn_batches=cfg.bn_batches,
                            batch_size=job.batching.batch_size, seed=job.seed,
                            channels_last=job.train.channels_last, dna_tables=cfg.dna_tables)
    bar = tqdm(total=cfg.trials, desc=f"search {s.strategy}", disable=None if show_progress else True, dynamic_ncols=True)
    objective = Objective(space, lambda arch: score_archs(ctx, [arch], evaluators)[0], primary, budget, progress=bar,
                          budget_ms=cfg.budget_ms, latency_table=s.table, journal=out / _journal_name(job, cfg, names, s.table),
                          runtime=cfg.runtime)
    if job.run.tensorboard:  # every score as it lands, and the best so far, against the trial number
        bar = _ScoresToTensorBoard(bar, objective, out / "tensorboard", primary)
        objective.progress = bar
    rows = plan.strategy.search(SearchInputs(objective, cfg.trials, seed=job.seed, storage=s.storage,
                                             study_name=s.study_name, dna_tables=cfg.dna_tables,
                                             checkpoint=cfg.checkpoint, context=ctx, workdir=out))
    bar.close()
    return _write_outputs(cfg, rows, s, started, watch)


class _ScoresToTensorBoard:
    """A progress bar stand-in that also writes each newly scored arch's score (and the best so far) to
    TensorBoard, at its trial number."""

    def __init__(self, bar: Any, objective: Objective, directory: Path, primary: str) -> None:
        self.bar, self.objective, self.primary = bar, objective, primary
        self.writer = ScalarWriter(directory)
        self.best = float("-inf")

    def update(self, n: int = 1) -> None:
        self.bar.update(n)
        row = next(reversed(self.objective.cache.values()))  # the arch just scored
        self.best = max(self.best, row[self.primary])
        self.writer.write(len(self.objective.cache), {f"search/{self.primary}": row[self.primary],
                                                      "search/best_so_far": self.best})

    def close(self) -> None:
        self.bar.close()
        self.writer.close()


def _study_report(strategy: str, storage: str, study_name: str, evaluator: str, budget: float,
                  budget_ms: float | None) -> list[dict[str, Any]]:
    """Every feasible arch the shared study scored, best first."""
    import optuna

    from nas_kd.search.optuna_search import study_rows
    from nas_kd.studies import open_storage

    if not strategy.startswith("optuna"):
        raise UserError(f"--report reads a shared Optuna study; search.strategy {strategy!r} keeps none")
    try:
        study = optuna.load_study(study_name=study_name, storage=open_storage(storage))
    except KeyError:
        raise UserError(f"--report: no study {study_name!r} in {storage}") from None
    rows = [r for r in study_rows(study).values()
            if r["mflops"] * 1e6 <= budget and (budget_ms is None or r["latency_ms"] <= budget_ms)]
    if not rows:
        raise UserError(f"--report: study {study_name!r} has no scored arch under the budget yet")
    return sorted(rows, key=lambda r: r[evaluator], reverse=True)


def _journal_name(job: Job, cfg: SearchConfig, names: list[str], table: dict[str, Any] | None) -> str:
    """``scored-<key>.jsonl``: ``key`` changes with anything a candidate's scores depend on (the data and the
    teacher as the run's config describes them, the latency table as the search uses it, re-anchored or not), so a
    journal is only ever read back by the search that wrote it."""
    with open(cfg.checkpoint, "rb") as f:
        supernet = hashlib.file_digest(f, "sha256").hexdigest()
    what = {"supernet": supernet, "evaluators": names, "probe_size": cfg.probe_size,
            "bn_batches": cfg.bn_batches, "seed": job.seed, "data": job.run.config.get("data"),
            "teacher": job.run.config.get("teacher"), "dna_tables": cfg.dna_tables,
            "latency_table": hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest() if table else None}
    return f"scored-{hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:12]}.jsonl"


def load_searchable(path: str | Path) -> Supernet | StagedSpace:
    """The weight-sharing supernet in ``path``, or for a blockwise (DNA) supernet just its space: a search on
    it scores with evaluators that ignore supernet weights (the dna tables, costs, training-free)."""
    meta = load_checkpoint(path).get("blockwise")
    if isinstance(meta, dict):
        return from_meta(meta)
    return load_supernet(path)


def _write_outputs(cfg: SearchConfig, rows, s: _Setting, started, watch) -> dict:
    out, space, names, budget, storage, study_name = s.out, s.space, s.names, s.budget, s.storage, s.study_name
    primary = names[0]
    if not rows:
        raise UserError(f"search: no arch under {budget / 1e6:.2f} MFLOPs was scored")
    write_candidates(rows, out)
    measured = _measured_pick(space, rows, cfg, s.table) if cfg.budget_ms is not None and cfg.latency_table else None
    best = measured["pick"] if measured else rows[0]
    write_result(out / "best_arch.json", {"arch": best["arch"], "mflops": best["mflops"], primary: best[primary]},
                 watch.seconds(), started)
    pareto_plot(rows, primary, budget / 1e6, out / "pareto.png", picked=best)
    payload = {
        "space": space.name, "checkpoint": cfg.checkpoint, "evaluator": primary, "evaluators": names,
        "strategy": s.strategy, "budget_mflops": budget / 1e6, "trials": cfg.trials, "scored": len(rows),
        "best": best, "pareto_front": pareto_front(rows, primary),
        "budget_ms": cfg.budget_ms, "latency_table": cfg.latency_table,
        **(_measured_latency(space, best, cfg.latency_table) if measured is None else
           {"best_predicted_latency_ms": best["latency_ms"],
            "best_measured_latency_ms": measured["check"]["measured_ms"],
            "best_latency_ms_at_table_speed": measured["check"]["at_table_speed_ms"],
            "measured_checks": measured["checks"], "best_rank_by_score": measured["check"]["rank"],
            "final_check_rounds": measured["rounds"], "reanchored": s.table["reanchored"]}),
        "storage": storage if s.strategy.startswith("optuna") else None,
        "study": study_name if s.strategy.startswith("optuna") else None,  # rows are the whole study's
    }
    return write_result(out / "search.json", payload, watch.seconds(), started)


def _measured_pick(space, rows: list[dict[str, Any]], cfg: SearchConfig, table: dict[str, Any]) -> dict[str, Any]:
    """Under a latency budget, the budget must hold when measured: the ``search.measure_top`` best candidates are
    timed here together with the table's anchors (:func:`~nas_kd.latency.anchored_ms`; ``table`` is the search's
    re-anchored table), and the first in score order whose time relative to the anchors puts it within
    ``search.budget_ms`` at the table's speed is the pick. If none is, the table's error on archs like these is
    measured: every scored candidate's prediction is divided by the timed ones' median predicted / measured ratio
    and the next ``search.measure_top`` by score that fit by that corrected prediction are timed the same way
    (once; on the openvino-int8 batch-32 table the ~1 ms archs a search prefers ran 6-19 % slower than predicted
    while the anchors nearest the budget ran as predicted). None then: a one-line error with the fastest one."""
    import statistics

    checks: list[dict[str, Any]] = []
    rounds, factor, todo = [], 1.0, rows[: cfg.measure_top]
    while todo:
        timed = anchored_ms(space, [r["arch"] for r in todo], table)
        rounds.append({"speed": timed["speed"], "anchors": timed["anchors"], "prediction_divided_by": factor})
        first = len(checks)
        for row, ms, at in zip(todo, timed["measured_ms"], timed["at_table_speed_ms"]):
            checks.append({"rank": rows.index(row) + 1, "predicted_ms": row["latency_ms"], "measured_ms": ms,
                           "at_table_speed_ms": at, "predicted_over_measured": row["latency_ms"] / at,
                           "round": len(rounds), "mflops": row["mflops"]})
        for check in checks[first:]:
            if check["at_table_speed_ms"] <= cfg.budget_ms:
                return {"pick": rows[check["rank"] - 1], "check": check, "checks": checks, "rounds": rounds}
        if len(rounds) == 2:
            break
        factor = statistics.median(c["predicted_over_measured"] for c in checks)
        timed_ranks = {c["rank"] for c in checks}
        todo = [r for i, r in enumerate(rows, start=1)
                if i not in timed_ranks and r["latency_ms"] / factor <= cfg.budget_ms][: cfg.measure_top]
    fastest = min(checks, key=lambda c: c["at_table_speed_ms"])
    raise UserError(f"search.budget_ms {cfg.budget_ms:g}: none of the {len(checks)} best candidates meets it when "
                    f"measured here (fastest: rank {fastest['rank']}, {fastest['at_table_speed_ms']:.3f} ms at the "
                    f"table's speed, {fastest['predicted_ms']:.3f} ms predicted): rebuild the latency table on this "
                    "machine, raise the budget or search.measure_top")


def _measured_latency(space, best: dict[str, Any], table_path: str | None) -> dict[str, Any]:
    """The best arch's latency measured here with the table's batch size, threads and device (beside its prediction)."""
    if not table_path:
        return {}
    return {"best_predicted_latency_ms": best["latency_ms"],
            "best_measured_latency_ms": measured_ms(space, [best["arch"]], load_table(table_path))[0]}


def write_candidates(rows: list[dict[str, Any]], out: Path) -> None:
    """``candidates.jsonl`` (one row per arch) and ``candidates.csv`` (the arch as a JSON string)."""
    write_text_atomic(out / "candidates.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    keys = [k for k in rows[0] if k != "arch"]
    table = io.StringIO(newline="")
    w = csv.writer(table)
    w.writerow(["rank", *keys, "arch"])
    for i, r in enumerate(rows, start=1):
        w.writerow([i, *(r[k] for k in keys), json.dumps(r["arch"], sort_keys=True)])
    write_text_atomic(out / "candidates.csv", table.getvalue())
