"""``nas-kd prune``: a trained network pruned to a FLOPs budget (:mod:`nas_kd.prune`), then fine-tuned with the
recipe's distillation terms, its teacher the unpruned network (the job's teacher)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nas_kd.distill import Term
from nas_kd.evaluation import evaluate
from nas_kd.job import Job
from nas_kd.locks import holding
from nas_kd.provenance import Stopwatch, origin, write_result
from nas_kd.prune import is_pruned, load_pruned, prune_to_budget, save_pruned
from nas_kd.pruning import Pruner


@holding("out")
def prune_network(job: Job, network: torch.nn.Module, network_origin: dict[str, Any], pruner: Pruner,
                  pruner_spec: dict[str, Any], budget_mflops: float, out: str | Path, *, terms: list[Term] = (),
                  ce_weight: float = 1.0, finetune_epochs: int = 0,
                  show_progress: bool = True) -> dict[str, Any]:
    """``network`` (its ``network_origin``: ``{model, kwargs, num_classes, in_channels}``) pruned by ``pruner`` to
    ``budget_mflops`` into ``out/cut``, then fine-tuned for ``finetune_epochs`` in ``out/finetune`` with the
    distillation ``terms`` (the job's teacher teaching) and saved to ``out`` (``pruned.json``, ``weights.pt``); writes
    ``out/prune.json`` (the pruner, the share removed, MFLOPs and parameters, test accuracy cut and fine-tuned).
    Each step is kept: a killed run continues with the next one."""
    from nas_kd.data import calibration_batches as batches_of
    from nas_kd.students import model_student
    from nas_kd.train.distill import finished_student, train_students

    started, watch = origin(), Stopwatch()
    out = Path(out)
    data = job.data
    cut_dir = out / "cut"
    if not is_pruned(cut_dir):
        wanted = pruner.data_batches()  # those a criterion reads (at most one epoch's)
        batches = [b for _, b in zip(range(wanted), batches_of(data, job.batching.batch_size, job.seed).epoch(0))]
        cut, report = prune_to_budget(network.eval(), tuple(data.input_shape), pruner, budget_mflops, batches=batches)
        report["data_images"] = sum(len(y) for _, y in batches)
        save_pruned(cut, cut_dir, network_origin, {"pruner": pruner_spec, **report})
    cut_report = json.loads((cut_dir / "pruned.json").read_text())
    net = load_pruned(cut_dir)
    cut_acc = evaluate(net, data.test, job.batching.eval_batch_size, job.train.channels_last)["acc"]
    final = None
    if finetune_epochs:
        ft = job.derive(job.run.at(out / "finetune"), train={"epochs": finetune_epochs})
        describe = {"pruned_from": network_origin, "pruner": pruner_spec}
        final = finished_student(ft, net) or train_students(ft, model_student(net, describe), terms=terms,
                                                           ce_weight=ce_weight, show_progress=show_progress)
    keys = ("pruner", "ratio", "mflops_before", "mflops", "params_before", "params", "budget_mflops")
    save_pruned(net.cpu().eval(), out, network_origin, {k: cut_report[k] for k in keys})
    payload = {**{k: cut_report[k] for k in keys}, "cut_test_acc": cut_acc,
               "test_acc": final["test_acc"] if final else cut_acc, "finetune_epochs": finetune_epochs,
               "train_images": finetune_epochs * len(data.train), "distill": [t.spec() for t in terms],
               "ce_weight": ce_weight, "pruner_images": cut_report["data_images"],
               "network": str(out)}
    return write_result(out / "prune.json", payload, watch.seconds(), started)
