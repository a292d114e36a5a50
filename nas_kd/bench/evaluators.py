"""``nas-kd bench evaluators``: archs scored per minute by each evaluator (and by all together).

Each evaluator scores the same random archs of a trained supernet on its own, so subnet
evaluators each pay the BN recalibration; ``all`` shares it, as ``nas-kd search`` does.
``times_faster``: for each evaluator that ignores the supernet's weights (training-free, cost, table),
how many times faster it is than each one that reads them (a ratio inside one run, so machine load
mostly cancels), and ``min`` over those.
"""
from __future__ import annotations

import random
from typing import Any

import torch

from nas_kd.checkpoint import load_supernet
from nas_kd.evaluators import EVALUATORS, EvalContext, build_evaluators, score_archs
from nas_kd.job import Job
from nas_kd.provenance import Stopwatch


def bench_evaluators(job: Job, checkpoint: str, names: list[str], *, probe_size: int, bn_batches: int,
                     num_archs: int = 8, dna_tables: str | None = None) -> dict[str, Any]:
    """Seconds per arch of each evaluator in ``names`` (and all together) on ``num_archs`` random archs of the
    supernet in ``checkpoint``, with the job's data and teacher."""
    data, teacher = job.data, job.teacher
    net = load_supernet(checkpoint)
    rng = random.Random(job.seed)
    archs = [net.space.sample(rng) for _ in range(num_archs)]
    out: dict[str, Any] = {"threads": torch.get_num_threads(), "num_archs": num_archs,
                           "probe_size": probe_size, "bn_batches": bn_batches}
    rates = {}
    for group in [[n] for n in names] + [names]:
        ctx = EvalContext.build(net, teacher.module(), data, teacher_stages=teacher.stages,
                                probe_size=probe_size, bn_batches=bn_batches,
                                batch_size=job.batching.batch_size, seed=job.seed,
                                channels_last=job.train.channels_last, dna_tables=dna_tables)
        evaluators = build_evaluators(group, "bench evaluators")
        score_archs(ctx, archs[:1], evaluators)  # teacher features, RDMs and Grams: once per probe set
        watch = Stopwatch()
        score_archs(ctx, archs, evaluators)
        seconds = watch.seconds()
        rates["all" if len(group) > 1 else group[0]] = {"seconds_per_arch": round(seconds / num_archs, 3),
                                                         "archs_per_minute": round(60 * num_archs / seconds, 1)}
    out["evaluators"] = rates
    reading = [n for n in names if EVALUATORS.get(n).reads_supernet]
    out["times_faster"] = {}
    for n in names:
        if n not in reading and reading:
            free = max(rates[n]["seconds_per_arch"], 1e-3)  # rounded to ms: a floor, not a zero
            ratios = {m: round(rates[m]["seconds_per_arch"] / free, 1) for m in reading}
            out["times_faster"][n] = {**ratios, "min": min(ratios.values())}
    return out
