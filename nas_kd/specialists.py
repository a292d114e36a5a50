"""Hinton's specialists (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015, section 5):
a generalist (the recipe's teacher) plus specialist models for the classes it confuses most, combined into one
teacher.

``nas-kd specialists``:

1. the generalist's confusion matrix on the validation split gives the clusters (:func:`confusion_clusters`: the
   most confused pair of classes, grown by the class most confused with the cluster, ``cluster_size`` classes
   each; the paper clusters the covariance of the generalist's predictions, a named simplification);
2. each specialist starts from the generalist's weights with a new head over its classes plus a dustbin class
   (every other class), and trains on the training split with hard targets (labels collapsed to its classes and
   the dustbin) plus the generalist's soft targets collapsed alike (``kd_weight`` x T^2 KL at ``temperature``),
   which keeps it from overfitting; on the paper's enriched training set (``batches: enriched``, the default:
   every training image of its classes and as many drawn at random from the rest, so a batch is about half from
   its special subset; :func:`enriched`) or on the whole training split (``batches: data``);
3. ``ensemble.pt`` holds the generalist and the specialists, loaded as the teacher
   ``{model: specialist_ensemble, kwargs: {generalist: ..., clusters: ...}, checkpoint: .../ensemble.pt}``
   (written into ``specialists.json``): :class:`SpecialistEnsemble` combines them per input as the paper does,
   the full distribution q minimising KL(p_g || q) + sum over active specialists of KL(p_m || q) (a specialist is
   active when its classes hold the generalist's most probable class), by ``steps`` gradient steps on q's logits.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from nas_kd.config import TeacherConfig
from nas_kd.data import Split
from nas_kd.errors import UserError
from nas_kd.job import Job
from nas_kd.models.specialist_ensemble import SpecialistEnsemble, collapse
from nas_kd.locks import holding
from nas_kd.provenance import write_json_atomic
from nas_kd.runs import RunDir


def confusion_matrix(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class)."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (y.numpy(), logits.argmax(1).numpy()), 1)
    return m


def confusion_clusters(confusion: np.ndarray, clusters: int, size: int) -> list[list[int]]:
    """``clusters`` disjoint groups of ``size`` classes, greedily: the most confused pair (both directions
    summed) of the classes left, then the class most confused with the group, until it has ``size``."""
    sym = (confusion + confusion.T).astype(float)
    np.fill_diagonal(sym, -1)
    left = set(range(len(confusion)))
    out = []
    for _ in range(clusters):
        if len(left) < size:
            raise UserError(f"--clusters {clusters} x --cluster-size {size} needs more than the {len(confusion)} classes")
        pairs = [(sym[a, b], a, b) for a in left for b in left if a < b]
        _, a, b = max(pairs)
        group = [a, b]
        while len(group) < size:
            group.append(max(left - set(group), key=lambda c: (sum(sym[c, g] for g in group), -c)))
        out.append(sorted(group))
        left -= set(group)
    return out


def enriched(split: Split, classes: list[int], seed: int) -> Split:
    """A specialist's enriched training set (Hinton et al., section 5: half its examples from its special subset,
    half sampled at random from the rest of the training set): every image of ``classes`` and as many others drawn
    without replacement (seeded), in the split's order. An image folder read lazily is decoded here."""
    special = torch.isin(split.y, torch.tensor(classes, dtype=split.y.dtype))
    inside, outside = special.nonzero().flatten(), (~special).nonzero().flatten()
    drawn = outside[torch.randperm(len(outside), generator=torch.Generator().manual_seed(seed))[:len(inside)]]
    keep = torch.cat([inside, drawn]).sort().values
    return Split(split.x[keep], split.y[keep])


def collapse_labels(y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    out = torch.full_like(y, len(classes))
    for i, c in enumerate(classes):
        out[y == c] = i
    return out


@holding("out")
def train_specialists(job: Job, teacher_cfg: TeacherConfig, out: str | Path, *, clusters: int, cluster_size: int,
                      epochs: int, batches: Literal["enriched", "data"] = "enriched", kd_weight: float = 1.0,
                      temperature: float = 2.0, show_progress: bool = True) -> dict[str, Any]:
    """Cluster, train every specialist (a resumable run each, ``<out>/specialist<i>``, with the
    :class:`~nas_kd.job.Job`'s settings and ``batches``, see above; the generalist is its teacher, built from the
    ``teacher`` section ``teacher_cfg``), then write ``<out>/ensemble.pt`` and ``<out>/specialists.json``; returns the latter."""
    from nas_kd.checkpoint import save_checkpoint
    from nas_kd.evaluation import evaluate
    from nas_kd.teacher import build_model, load_teacher
    from nas_kd.train.setup import build_loop, open_run, prepare

    out = Path(out)
    data = job.data
    generalist = job.teacher.module()
    with torch.no_grad():
        val_logits = torch.cat([generalist(data.val.x[i:i + 500]) for i in range(0, len(data.val), 500)])
    confusion = confusion_matrix(val_logits, data.val.y, data.num_classes)
    groups = confusion_clusters(confusion, clusters, cluster_size)
    general_cfg = {"model": teacher_cfg.model, "kwargs": dict(teacher_cfg.kwargs)}
    finals = []
    for i, classes in enumerate(groups):
        r = job.derive(job.run.at(out / f"specialist{i}"), train={"epochs": epochs},
                       config={"specialist.classes": classes, "specialist.batches": batches})
        done = RunDir.finished(r.run)
        if done is not None:  # finished before a kill: kept (its weights are read below)
            finals.append(done)
            continue
        started, device = prepare(r)
        run = open_run(r, resume=False)
        train = enriched(data.train, classes, job.seed + i) if batches == "enriched" else data.train
        remapped = dataclasses.replace(data, num_classes=len(classes) + 1,
                                       train=Split(train.x, collapse_labels(train.y, classes)),
                                       val=Split(data.val.x, collapse_labels(data.val.y, classes)))
        model = build_model(teacher_cfg, len(classes) + 1, data.in_channels)
        state = {k: v for k, v in generalist.state_dict().items() if model.state_dict()[k].shape == v.shape}
        model.load_state_dict(state, strict=False)  # the generalist's weights, a new head
        teacher = generalist.to(device)
        loop = build_loop(dataclasses.replace(r, data=remapped), run, model, device, on_step=None,
                          show_progress=show_progress)

        def step(x: torch.Tensor, y: torch.Tensor, classes=classes, model=model) -> dict[str, float]:
            logits = model(x).float()
            with torch.no_grad():
                soft = collapse(torch.softmax(teacher(x).float() / temperature, 1), classes)
            kd = F.kl_div(F.log_softmax(logits / temperature, 1), soft, reduction="batchmean") * temperature ** 2
            loss = F.cross_entropy(logits, y) + kd_weight * kd
            loss.backward()
            return {"loss": loss.item() * len(y), "acc": (logits.argmax(1) == y).sum().item(), "count": len(y)}

        def validate(epoch: int, model=model) -> dict[str, float]:
            result = {f"val_{k}": v for k, v in evaluate(model, remapped.val, job.batching.eval_batch_size).items()}
            model.train()
            return result

        loop.fit(step, validate)
        finals.append(loop.finish({"classes": classes, "batches": batches, "train_images": len(train),
                                   "val_acc": evaluate(model, remapped.val)["acc"]}, started))
        generalist = generalist.cpu()
    ensemble = SpecialistEnsemble(data.num_classes, data.in_channels, generalist=general_cfg, clusters=groups)
    ensemble.generalist.load_state_dict(generalist.state_dict())
    for spec, i in zip(ensemble.specialists, range(len(groups))):
        spec.load_state_dict(torch.load(out / f"specialist{i}" / "checkpoints" / "last.pt", weights_only=True)["model"])
    save_checkpoint({"model": ensemble.state_dict()}, out / "ensemble.pt")
    ens = load_teacher(TeacherConfig(model="specialist_ensemble", kwargs={"generalist": general_cfg, "clusters": groups},
                                     checkpoint=str(out / "ensemble.pt")), data.num_classes, data.in_channels)
    record = {"clusters": groups, "batches": batches, "confusion": confusion.tolist(), "specialists": finals,
              "generalist_test_acc": evaluate(generalist, data.test)["acc"], "ensemble_test_acc": evaluate(ens, data.test)["acc"],
              "teacher": {"model": "specialist_ensemble", "kwargs": {"generalist": general_cfg, "clusters": groups},
                          "checkpoint": str(out / "ensemble.pt"), "stages": []}}
    write_json_atomic(out / "specialists.json", record)
    return record
