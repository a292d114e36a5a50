"""Ground truth of the search-quality study: archs of equal-cost bands trained (distilled and from scratch)
with several seeds, as independent, shareable, committed jobs.

Bands: for each budget fraction f of ``rankcorr.bands``, B = f x the max arch's FLOPs, and
``archs_per_band`` distinct archs with FLOPs in [``band_floor`` B, B] (0.8 B by default), FLOPs-stratified and fixed by the seed, so
cost alone cannot rank them. One job = (band, arch, column, seed); column ``kd`` trains with the
recipe's ``distill`` terms and ``student.ce_weight``, ``scratch`` with cross-entropy alone.

Jobs go through :class:`nas_kd.studies.JobQueue` (an Optuna study as the queue: SQLite in the run
directory, or ``rankcorr.queue`` / ``--queue`` an RDB URL for several machines). A finished job
writes one small JSON record under ``rankcorr.records`` (committed to git), which later sessions
and other machines skip. Each record scores the model on every held-out image nothing was
selected on (the test set plus the validation split, since the last epoch is kept) and keeps the
measurement's binomial standard error, so measurement noise can be told from seed noise.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import search_spaces
from nas_kd.config import RankCorrConfig
from nas_kd.distill import Term
from nas_kd.errors import UserError
from nas_kd.evaluators import Evaluator
from nas_kd.job import Job
from nas_kd.provenance import Stopwatch, commit_record, machine, origin, write_result
from search_spaces import SAMPLERS

COLUMNS = ("kd", "scratch")


@dataclass(frozen=True)
class Study:
    """What the search-quality study trains and scores with: the job (data, teachers, schedule, seed and the run
    directory its jobs go under), the student space's name, the ``kd`` column's distillation ``terms`` and
    cross-entropy weight, the ``rankcorr`` section, and its evaluators (``rankcorr.evaluators``, built)."""

    job: Job
    space: str
    terms: tuple[Term, ...]
    ce_weight: float
    cfg: RankCorrConfig
    evaluators: tuple[Evaluator, ...] = ()

    def record_path(self, key: str, records: str | Path | None = None) -> Path:
        """Where the job ``key``'s record is committed (``records``, default ``rankcorr.records``)."""
        return Path(records or self.cfg.records) / f"{key}.json"


def arch_id(arch: dict[str, Any]) -> str:
    """A short stable id of a canonical arch."""
    return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]


def band_budget(space, fraction: float) -> float:
    """The band's budget B in FLOPs: ``fraction`` of the space's max arch."""
    return fraction * space.flops(space.max_arch())


def band_archs(space, fraction: float, n: int, seed: int, floor: float) -> list[dict[str, Any]]:
    """``n`` distinct archs with FLOPs in [``floor`` B, B], spread over 4 FLOPs bins, deterministic in ``seed``."""
    if not 0 < fraction <= 1:
        raise UserError(f"rankcorr.bands: {fraction} is not a fraction in (0, 1]")
    budget = band_budget(space, fraction)
    if budget < space.flops(space.min_arch()):
        raise UserError(f"rankcorr.bands: {fraction} x max FLOPs = {budget / 1e6:.2f} MFLOPs is below the smallest "
                        f"arch of {space.name} ({space.flops(space.min_arch()) / 1e6:.2f} MFLOPs)")
    sampler = SAMPLERS.build("flops", space=space, lo=floor * budget, hi=budget)
    rng = random.Random(f"{seed}-{space.name}-{fraction}")
    found: dict[str, dict] = {}
    for _ in range(200 * n):
        if len(found) == n:
            break
        arch = sampler.sample(rng, 1)[0]
        if floor * budget <= space.flops(arch) <= budget:
            found.setdefault(arch_id(arch), arch)
    if len(found) < n:
        raise UserError(f"rankcorr: found only {len(found)} distinct archs of {space.name} in the {fraction} band, "
                        f"asked for {n}")
    return sorted(found.values(), key=space.flops)


def study_bands(study: Study) -> dict[str, list[dict[str, Any]]]:
    """``{band name: archs}`` of the study; a band is named by its fraction (``"0.12"``)."""
    space, cfg = search_spaces.get(study.space), study.cfg
    return {str(f): band_archs(space, f, cfg.archs_per_band, study.job.seed, cfg.band_floor) for f in cfg.bands}


def job_key(space: str, band: str, arch: dict, column: str, seed: int) -> str:
    """The job's name (and its record's file name, without ``.json``)."""
    return f"{space}-b{band}-{arch_id(arch)}-{column}-s{seed}"


def plan(study: Study) -> dict[str, dict[str, Any]]:
    """Every job of the study in queue order: column by column; within one, arch i of every band with
    every seed before arch i + 1, so a partial ground truth has whole seed pairs in every band."""
    cfg = study.cfg
    for c in cfg.columns:
        if c not in COLUMNS:
            raise UserError(f"rankcorr.columns: {c!r} is not one of {', '.join(COLUMNS)}")
    if not cfg.seeds:
        raise UserError("rankcorr.seeds: give at least one seed")
    bands = study_bands(study)
    space = study.space
    jobs = {}
    for column in cfg.columns:
        for i in range(cfg.archs_per_band):
            for band, archs in bands.items():
                for seed in cfg.seeds:
                    key = job_key(space, band, archs[i], column, seed)
                    jobs[key] = {"space": space, "band": band, "arch": archs[i], "column": column, "seed": seed}
    return jobs


def job_setup(study: Study, key: str, job: dict[str, Any], out: Path) -> tuple[Job, tuple[Term, ...], float]:
    """The training job of one study job (its seed and its own run directory under ``out``), with its column's
    terms and cross-entropy weight (``scratch``: none and 1)."""
    scratch = job["column"] == "scratch"
    config = {"distill": [], "student.ce_weight": 1.0} if scratch else {}
    run = study.job.derive(study.job.run.at(out / "jobs" / key), seed=job["seed"], config=config)
    return run, () if scratch else study.terms, 1.0 if scratch else study.ce_weight


def heldout(final: dict[str, Any], test_n: int, val_n: int) -> dict[str, float]:
    """Accuracy on test + validation together, with its binomial standard error (measurement noise)."""
    n = test_n + val_n
    acc = (final["test_acc"] * test_n + final["val_acc"] * val_n) / n
    return {"heldout_acc": acc, "heldout_n": n, "heldout_se": math.sqrt(max(acc * (1 - acc), 0.0) / n)}


def train_job(study: Study, key: str, job: dict[str, Any], out: Path, *, records: str | Path | None = None,
              show_progress: bool = True) -> dict:
    """Train one job (resuming its run directory if a killed worker left a checkpoint) and write its record."""
    from nas_kd.students import arch_student
    from nas_kd.train.distill import train_students

    started, watch = origin(), Stopwatch()
    r, terms, ce_weight = job_setup(study, key, job, out)
    final_path = r.run.path / "final.json"
    if final_path.exists():
        final = json.loads(final_path.read_text())
    else:
        final = train_students(r, arch_student(job["space"], job["arch"]), terms=terms, ce_weight=ce_weight,
                               show_progress=show_progress)
    data = r.data
    record = {
        "key": key, **job, "mflops": final["mflops"], "params": final["params"],
        "test_acc": final["test_acc"], "val_acc": final["val_acc"], "test_n": len(data.test), "val_n": len(data.val),
        **heldout(final, len(data.test), len(data.val)),
        "epochs": r.train.epochs, "train_images": len(data.train), "distill": final["distill"],
        "ce_weight": final["ce_weight"], "seconds_per_epoch": final["seconds_per_epoch"],
        "train_wall_seconds": final["wall_seconds"], "device": final["device"], "machine": machine(),
    }
    return write_result(study.record_path(key, records), record, watch.seconds(), started)


def work_jobs(study: Study, jobs: dict[str, dict[str, Any]], out: str | Path, name: str, *,
              records: str | Path | None = None, queue: str | None = None, max_jobs: int | None = None,
              commit: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Enqueue the ``jobs`` that have no record yet in the queue ``name``, then work it; returns a progress summary."""
    from nas_kd.studies import JobQueue

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    url = queue or study.cfg.queue or f"sqlite:///{out / 'queue.db'}"
    q = JobQueue(url, name)
    q.enqueue([k for k in jobs if not study.record_path(k, records).exists()])

    def run(key: str) -> float:
        path = study.record_path(key, records)
        if not path.exists():  # another machine may have committed it meanwhile
            train_job(study, key, jobs[key], out, records=records, show_progress=show_progress)
            if commit:
                commit_record(path)
        return json.loads(path.read_text())["heldout_acc"]

    ran = q.work(run, max_jobs, known=jobs)
    finished = sum(study.record_path(k, records).exists() for k in jobs)
    return {"jobs": len(jobs), "finished": finished, "ran_here": len(ran),
            "records": str(records or study.cfg.records)}


def run_ground_truth(study: Study, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Enqueue the study's ground-truth jobs that have no record yet, then work the queue."""
    return work_jobs(study, plan(study), out, f"ground-truth-{study.space}", **kwargs)


def collect_ground_truth(study: Study) -> list[dict[str, Any]]:
    """Every finished record of the study (missing ones left out)."""
    return [json.loads(p.read_text()) for k in plan(study) if (p := study.record_path(k)).exists()]
