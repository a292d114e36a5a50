"""nas_kd from Python: the commands as functions over objects in memory (a teacher ``nn.Module``, tensors or
datasets), returning result objects.

Each function mirrors a command and calls the same library code (``nas-kd train-supernet`` ->
:func:`train_supernet`, ``search`` -> :func:`search_supernet`, ``export`` -> :func:`export_subnet`, ``distill`` ->
:func:`distill_student`, ``run`` -> :func:`run`; the names differ where a subpackage holds the plain one:
``nas_kd.search``, ``nas_kd.export``, ``nas_kd.distill``). Options that have a recipe section take it as a mapping of that section's keys
(``train={"lr": 0.05}``, ``supernet={"num_random": 1}``, ``search={"probe_size": 200}``), checked like a recipe: a
wrong key, type or range raises the same one-line :class:`~nas_kd.errors.UserError` before any work starts.
``out`` is the run directory (the command line's layout, so an interrupted call run again continues where it
stopped); without it a fresh temporary directory is used (the result's ``out``).

Example (a teacher and tensors in memory; tiny sizes so that it runs in seconds)::

    >>> import torch, nas_kd
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x, y = torch.rand(96, 1, 12, 12), torch.randint(0, 3, (96,))
    >>> data = nas_kd.make_data((x, y), val_fraction=0.25)
    >>> data.input_shape, data.num_classes
    ((1, 12, 12), 3)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from nas_kd.config import DataConfig, PipelineConfig, SearchConfig, SupernetConfig, TrainConfig
from nas_kd.data import DataBundle, from_tensors
from nas_kd.errors import OptionError, UserError
from nas_kd.evaluators.context import check_teacher_stages
from nas_kd.job import Job, RunSpec, Teacher
from nas_kd.plans import search_plan, supernet_plan, terms as parse_terms
from nas_kd.supernet import Supernet
from nas_kd.typecheck import build_dataclass

__all__ = ["DistillResult", "RunResult", "SearchResult", "SupernetResult", "distill_student", "export_subnet",
           "make_data", "run", "search_supernet", "train_supernet"]

BATCHING = ("batch_size", "eval_batch_size", "augment_pad", "flip")  # the data section's keys a call takes


@dataclass
class SupernetResult:
    """A trained supernet: the module (its ``space``, ``set_arch``), its checkpoint, the final metrics and the run
    directory."""

    supernet: Supernet
    checkpoint: Path
    metrics: dict[str, Any]
    out: Path


@dataclass
class SearchResult:
    """The picked ``arch``, every scored candidate (best first: arch, MFLOPs, params, scores), ``search.json``'s
    metrics and the run directory."""

    arch: dict[str, Any]
    candidates: list[dict[str, Any]]
    metrics: dict[str, Any]
    out: Path


@dataclass
class DistillResult:
    """The trained student module, the final metrics (``test_acc``, ``mflops``, ...) and the run directory."""

    student: nn.Module
    metrics: dict[str, Any]
    out: Path


@dataclass
class RunResult:
    """The whole pipeline's student (module and arch), the search's candidates, ``pipeline.json``'s metrics and the
    run directory."""

    student: nn.Module
    arch: dict[str, Any]
    candidates: list[dict[str, Any]]
    metrics: dict[str, Any]
    out: Path


def _as_tensor(x: Any, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise UserError(f"{what}: expected a tensor or a numpy array, got {type(x).__name__}")


def _images_labels(source: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images NCHW, labels)`` of ``(x, y)`` tensors / arrays or of a map-style dataset of ``(image, label)``."""
    if isinstance(source, torch.utils.data.Dataset) and not isinstance(source, tuple):
        items = [source[i] for i in range(len(source))]
        if not items:
            raise UserError(f"{what}: the dataset is empty")
        x = torch.stack([_as_tensor(i[0], f"{what} image") for i in items])
        y = torch.as_tensor([int(i[1]) for i in items])
    elif isinstance(source, Sequence) and len(source) == 2:
        x, y = _as_tensor(source[0], f"{what} images"), _as_tensor(source[1], f"{what} labels")
    else:
        raise UserError(f"{what}: expected (images, labels) tensors or arrays, or a torch Dataset of (image, label)")
    if x.ndim == 3:
        x = x.unsqueeze(1)  # N x H x W: one channel
    if x.ndim != 4:
        raise UserError(f"{what}: images must be N x C x H x W (or N x H x W), got shape {tuple(x.shape)}")
    if y.ndim != 1 or len(y) != len(x) or y.dtype.is_floating_point or (len(y) and int(y.min()) < 0):
        raise UserError(f"{what}: labels must be {len(x)} integers >= 0 (one per image), got {tuple(y.shape)} "
                        f"{y.dtype}")
    return x, y.long()


def make_data(train: Any, test: Any = None, *, val_fraction: float = 0.1, split_seed: int = 0,
              flip: bool = False) -> DataBundle:
    """A data bundle from memory: ``train`` (and optionally ``test``) as ``(images, labels)`` tensors or numpy
    arrays (images N x C x H x W or N x H x W, ``uint8`` 0..255 or floats in [0, 1]; integer labels) or as a
    map-style ``torch.utils.data.Dataset`` of ``(image, label)``. ``val_fraction`` of the training rows (seeded by
    ``split_seed``) validate; without ``test`` the validation split is also the test split. Images are normalised
    by the training split's per-channel mean and std; ``flip``: horizontal flips are a valid augmentation.
    The input shape and the number of classes are read from the data.

    For a registered dataset (Fashion-MNIST, CIFAR, image folders, npz) use :func:`nas_kd.data.load_dataset`.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction: {val_fraction} is not in (0, 1)")
    x, y = _images_labels(train, "train")
    val_size = max(1, round(val_fraction * len(y)))
    if val_size >= len(y):
        raise UserError(f"train: {len(y)} images leave none to train on after {val_size} for validation")
    x_test = y_test = None  # the validation rows test too
    if test is not None:
        x_test, y_test = _images_labels(test, "test")
        if tuple(x_test.shape[1:]) != tuple(x.shape[1:]):
            raise UserError(f"test: images of shape {tuple(x_test.shape[1:])}, train has {tuple(x.shape[1:])}")
    return from_tensors(x, y, x_test, y_test, val_size=val_size, split_seed=split_seed, flip=flip)


def _section(cls: type, given: dict[str, Any] | None, where: str, fixed: dict[str, Any],
             allowed: Sequence[str] | None = None) -> Any:
    """The section ``cls`` from the mapping ``given`` plus the call's own keyword arguments ``fixed`` (a key given
    both ways is refused), checked like a recipe section."""
    if given is not None and not isinstance(given, dict):
        raise OptionError(f"{where}: expected a mapping of {cls.__name__} keys, got {type(given).__name__}")
    given = dict(given or {})
    both = sorted(set(given) & set(fixed))
    if both:
        raise OptionError(f"{where}: {', '.join(both)} given both here and as a keyword argument: give it once")
    if allowed is not None:
        extra = sorted(set(given) - set(allowed))
        if extra:
            raise OptionError(f"{where}: unknown key {extra[0]!r}; allowed: {', '.join(allowed)}")
    return build_dataclass(cls, {**given, **fixed}, where, OptionError)


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _describe_data(data: DataBundle) -> dict[str, Any]:
    """What identifies the data in a run's config (so a run continued on other data is refused)."""
    x = data.train.x
    sample = [x[:1024]] if isinstance(x, torch.Tensor) else []
    return {"name": data.name, "input_shape": list(data.input_shape), "num_classes": data.num_classes,
            "sizes": [len(data.train), len(data.val), len(data.test)], "fingerprint": _digest([*sample, data.train.y])}


def _teachers(teacher: Any, stages: Sequence[str] | None, data: DataBundle) -> tuple[Teacher, ...]:
    """The call's teachers: a module (with ``teacher_stages``), a :class:`~nas_kd.job.Teacher`, or a list of them,
    each fed from ``data`` (its ``preprocess`` undoes the data's normalisation); stage names that are not modules
    of their teacher are refused."""
    if not isinstance(data, DataBundle):
        raise UserError(f"data: expected a DataBundle (nas_kd.make_data or nas_kd.data.load_dataset), got "
                        f"{type(data).__name__}")
    if teacher is None:
        return ()
    items = list(teacher) if isinstance(teacher, (list, tuple)) else [teacher]
    if stages and len(items) > 1:
        raise UserError("teacher_stages: with several teachers give each as nas_kd.Teacher.of(module, stages)")
    out = []
    for item in items:
        t = (item if isinstance(item, Teacher) else Teacher.of(item, list(stages or []))).for_data(data)
        check_teacher_stages(t.module(), t.stages)
        out.append(t)
    return tuple(out)


def _describe_teacher(t: Teacher) -> dict[str, Any]:
    m = t.module()
    state = list(m.state_dict().values()) if not isinstance(m, torch.jit.ScriptModule) else []
    return {"class": f"{type(m).__module__}.{type(m).__qualname__}", "stages": list(t.stages), "source": t.source,
            "preprocess": t.preprocess,
            "fingerprint": _digest([s for s in state if isinstance(s, torch.Tensor)])}


def _job(kind: str, data: DataBundle, teachers: tuple[Teacher, ...], *, seed: int, out: str | Path | None,
         train: TrainConfig, batching: DataConfig, tensorboard: bool, **sections: Any) -> Job:
    """The call's job; its run config records the call (the command, the data's and teachers' fingerprints, every
    section), so a run directory is only continued by the same call."""
    if not isinstance(data, DataBundle):
        raise UserError(f"data: expected a DataBundle (nas_kd.make_data or nas_kd.data.load_dataset), got "
                        f"{type(data).__name__}")
    path = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix=f"nas_kd-{kind}-"))
    config = {"api": kind, "seed": seed, "data": _describe_data(data),
              "teacher": [_describe_teacher(t) for t in teachers], "train": dataclasses.asdict(train),
              "batching": {k: getattr(batching, k) for k in BATCHING},
              **{k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in sections.items()}}
    return Job(data=data, run=RunSpec(path, json.loads(json.dumps(config)), tensorboard), train=train,
               batching=batching, seed=seed, teachers=teachers)


def _train_batching(train: dict | None, batching: dict | None, **train_fixed: Any) -> tuple[TrainConfig, DataConfig]:
    return (_section(TrainConfig, train, "train", {k: v for k, v in train_fixed.items() if v is not None}),
            _section(DataConfig, batching, "batching", {}, allowed=BATCHING))


def train_supernet(teacher: nn.Module | Teacher | None, data: DataBundle, *, teacher_stages: Sequence[str] = (),
                   space: str = "resnet", mode: str | dict = "sandwich", epochs: int = 20, seed: int = 0,
                   out: str | Path | None = None, supernet: dict | None = None, train: dict | None = None,
                   batching: dict | None = None, resume: bool = False, show_progress: bool = True,
                   tensorboard: bool = False) -> SupernetResult:
    """Train a weight-sharing supernet of ``space`` for ``data`` by ``mode`` (:data:`nas_kd.train.SUPERNET_TRAINERS`:
    sandwich, spos, progressive, cream, blockwise; a name or ``{"name": ..., **its options}``), taught by its own
    largest subnet and/or ``teacher`` (``mode={"name": "sandwich", "soft_labels": "teacher"}``; ``teacher`` may be
    None when nothing needs it).

    ``supernet``: the other keys of a recipe's ``supernet`` section; ``train``: the ``train`` section (lr,
    optimizer, device, ...); ``batching``: batch_size, eval_batch_size, augment_pad, flip.
    """
    from nas_kd.checkpoint import load_supernet

    cfg = _section(SupernetConfig, supernet, "supernet", {"space": space, "mode": mode})
    train_cfg, batch_cfg = _train_batching(train, batching, epochs=epochs)
    plan = supernet_plan(cfg, train_cfg.epochs)
    trainer = plan.trainer
    job = _job("train_supernet", data, _teachers(teacher, teacher_stages, data), seed=seed, out=out, train=train_cfg,
               batching=batch_cfg, tensorboard=tensorboard, supernet=cfg)
    final = trainer.train(job, cfg, resume=resume, show_progress=show_progress)
    checkpoint = Path(final["checkpoint"])
    net = load_supernet(checkpoint) if trainer.weight_sharing else None
    return SupernetResult(net, checkpoint, final, job.run.path)


def _budget_fraction(budget_mflops: float | None, budget_fraction: float | None) -> float | None:
    """The call's fraction of the teacher's FLOPs, checked as ``pipeline.budget_fraction_of_teacher`` is."""
    if budget_mflops is not None and budget_fraction is not None:
        raise UserError("budget_mflops and budget_fraction both set a FLOPs budget: give one")
    if budget_fraction is not None:
        _section(PipelineConfig, {"budget_fraction_of_teacher": budget_fraction}, "budget_fraction", {})
    return budget_fraction


def _terms(terms: Sequence[dict | str]) -> list:
    """The call's distillation terms (names or ``{name, weight, ...options}``), checked as a recipe's ``distill``."""
    return parse_terms([{"name": t} if isinstance(t, str) else t for t in terms], "terms")


def _checkpoint(supernet: SupernetResult | str | Path) -> str:
    path = supernet.checkpoint if isinstance(supernet, SupernetResult) else Path(supernet)
    if not path.exists():
        raise UserError(f"supernet: {path} does not exist")
    return str(path)


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def search_supernet(supernet: SupernetResult | str | Path, teacher: nn.Module | Teacher, data: DataBundle, *,
           teacher_stages: Sequence[str] = (), budget_mflops: float | None = None,
           budget_fraction: float | None = None, budget_ms: float | None = None, latency_table: str | None = None,
           evaluator: str | dict = "kl", strategy: str | dict = "evolution", trials: int = 100, seed: int = 0,
           out: str | Path | None = None, search: dict | None = None, train: dict | None = None,
           batching: dict | None = None, show_progress: bool = True, tensorboard: bool = False) -> SearchResult:
    """Score ``trials`` archs of the trained ``supernet`` (a :class:`SupernetResult` or a checkpoint) by
    ``evaluator`` (:data:`nas_kd.evaluators.EVALUATORS`: similarity to ``teacher``, accuracy, training-free, cost)
    with ``strategy`` (:data:`nas_kd.search.STRATEGIES`) under a budget: ``budget_mflops`` (fvcore FLOPs), or
    ``budget_fraction`` of the teacher's FLOPs (default: the largest arch), and optionally ``budget_ms`` predicted
    by ``latency_table`` (``nas-kd latency-table``; the pick is then timed here until one meets it).

    ``teacher_stages``: the teacher's module names paired with the stages the evaluator compares (stage-paired
    evaluators only). ``strategy``: a name or ``{"name": ..., **its options}``. ``search``: the other keys of a
    recipe's ``search`` section (probe_size, bn_batches, ...).
    """
    from nas_kd.flops import teacher_fraction_mflops
    from nas_kd.search.run import run_search

    teachers = _teachers(teacher, teacher_stages, data)
    fraction = _budget_fraction(budget_mflops, budget_fraction)
    budget = budget_mflops if fraction is None else \
        teacher_fraction_mflops(teachers[0].module(), data.input_shape, fraction)
    cfg = _section(SearchConfig, search, "search", {
        "checkpoint": _checkpoint(supernet), "evaluator": evaluator, "strategy": strategy, "trials": trials,
        "budget_mflops": budget, "budget_ms": budget_ms, "latency_table": latency_table})
    plan = search_plan(cfg)  # an unknown evaluator or option fails here, before anything is written
    train_cfg, batch_cfg = _train_batching(train, batching)
    job = _job("search_supernet", data, teachers, seed=seed, out=out, train=train_cfg, batching=batch_cfg,
               tensorboard=tensorboard, search=cfg)
    metrics = run_search(job, plan, show_progress=show_progress)
    return SearchResult(metrics["best"]["arch"], _rows(job.run.path / "candidates.jsonl"), metrics, job.run.path)


def export_subnet(supernet: Supernet | SupernetResult | str | Path, arch: dict | str, *, data: DataBundle | None = None,
           recalibrate_batches: int = 20, seed: int = 0, batching: dict | None = None, out: str | Path | None = None,
           torchscript: bool = False, onnx: bool = False) -> nn.Module:
    """The stand-alone network of ``arch`` (an arch dict, ``"max"``, ``"min"`` or a JSON file) with the weights of
    ``supernet`` (a module, e.g. trained in your own loop, a :class:`SupernetResult` or a checkpoint), its
    BatchNorm statistics recalibrated on ``recalibrate_batches`` of ``data``'s training batches (0 or no data: as
    stored), saved to ``out`` (``arch.json``, ``weights.pt``; also TorchScript / ONNX) and returned in eval mode.
    Distil it further with :func:`distill_student`."""
    from nas_kd.checkpoint import save_supernet
    from nas_kd.export import load_subnet
    from nas_kd.train.standalone import export_student

    _, batch_cfg = _train_batching(None, batching)
    where = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="nas_kd-export-"))
    if isinstance(supernet, Supernet):
        save_supernet(supernet, where / "supernet.pt")
        supernet = where / "supernet.pt"
    checkpoint = _checkpoint(supernet)
    job = _job("export_subnet", data, (), seed=seed, out=where, train=TrainConfig(), batching=batch_cfg,
               tensorboard=False) if data is not None and recalibrate_batches else None
    export_student(checkpoint, arch, where, job=job, recalibrate_batches=recalibrate_batches if job else 0,
                   torchscript=torchscript, onnx=onnx)
    return load_subnet(where).eval()


def distill_student(student: nn.Module, teacher: nn.Module | Teacher | Sequence[nn.Module | Teacher] | None,
            data: DataBundle, *, terms: Sequence[dict | str] = ({"name": "kd"},), ce_weight: float = 1.0,
            epochs: int = 20, teacher_stages: Sequence[str] = (), seed: int = 0, out: str | Path | None = None,
            train: dict | None = None, batching: dict | None = None, resume: bool = False,
            show_progress: bool = True, tensorboard: bool = False) -> DistillResult:
    """Train ``student`` (in place) on ``data`` with ``ce_weight`` x cross-entropy plus the distillation ``terms``
    (names or ``{name, weight, ...options}`` of :data:`nas_kd.distill.DISTILLERS`; ``[]``: labels only), taught by
    ``teacher`` (several for multi-teacher methods). Feature methods pair ``teacher_stages`` with the student's
    stages (a nas_kd subnet names its own; give a method's ``student_layers`` otherwise)."""
    from nas_kd.students import model_student
    from nas_kd.train.distill import train_students

    if not isinstance(student, nn.Module):
        raise UserError(f"student: expected a torch.nn.Module, got {type(student).__name__}")
    parsed = _terms(terms)
    train_cfg, batch_cfg = _train_batching(train, batching, epochs=epochs)
    job = _job("distill_student", data, _teachers(teacher, teacher_stages, data), seed=seed, out=out, train=train_cfg,
               batching=batch_cfg, tensorboard=tensorboard, terms=[t.spec() for t in parsed], ce_weight=ce_weight)
    describe = {"model": f"{type(student).__module__}.{type(student).__qualname__}"}
    final = train_students(job, model_student(student, describe), terms=parsed, ce_weight=ce_weight,
                           resume=resume, show_progress=show_progress)
    return DistillResult(student, final, job.run.path)


def run(teacher: nn.Module | Teacher, data: DataBundle, *, teacher_stages: Sequence[str] = (),
        budget_mflops: float | None = None, budget_fraction: float | None = None, budget_ms: float | None = None,
        latency_table: str | None = None, space: str = "resnet", mode: str | dict = "sandwich", epochs: int = 20,
        evaluator: str | dict = "kl", strategy: str | dict = "evolution", trials: int = 100,
        terms: Sequence[dict | str] = ({"name": "kd"},), ce_weight: float = 1.0, finetune_epochs: int = 1,
        supernet_checkpoint: str | Path | None = None, seed: int = 0, out: str | Path | None = None,
        supernet: dict | None = None, search: dict | None = None, pipeline: dict | None = None,
        train: dict | None = None, batching: dict | None = None, tensorboard: bool = False) -> RunResult:
    """The whole job (``nas-kd run``): train a supernet of ``space`` for ``epochs`` (or search the trained one at
    ``supernet_checkpoint``), search it under the budget (as :func:`search_supernet`), export the pick with recalibrated
    BatchNorm and distil it from ``teacher`` with ``terms`` for ``finetune_epochs``, then compare it with the
    teacher. ``supernet`` / ``search`` / ``pipeline`` / ``train`` / ``batching``: the other keys of those recipe
    sections (e.g. ``pipeline={"finetune_lr": 0.05, "quantize": True}``)."""
    from nas_kd.export import load_subnet
    from nas_kd.pipeline import run_pipeline

    teachers = _teachers(teacher, teacher_stages, data)
    if not teachers:
        raise UserError("teacher: run needs a trained teacher module")
    parsed = _terms(terms)
    supernet_cfg = _section(SupernetConfig, supernet, "supernet", {"space": space, "mode": mode})
    search_cfg = _section(SearchConfig, search, "search", {
        "evaluator": evaluator, "strategy": strategy, "trials": trials, "budget_mflops": budget_mflops,
        "budget_ms": budget_ms, "latency_table": latency_table})
    fraction = _budget_fraction(budget_mflops, budget_fraction)
    pipeline_cfg = _section(PipelineConfig, pipeline, "pipeline", {
        "finetune_epochs": finetune_epochs, **({} if fraction is None else {"budget_fraction_of_teacher": fraction})},
        allowed=[f.name for f in dataclasses.fields(PipelineConfig) if f.name != "supernet_checkpoint"])
    if pipeline_cfg.baselines:
        raise UserError("pipeline.baselines: a teacher given as a module cannot be rebuilt to be pruned; use nas-kd "
                        "run with teacher.model, or prune it from Python with nas_kd.prune.prune_to_budget")
    train_cfg, batch_cfg = _train_batching(train, batching, epochs=epochs)
    supernet_p, search_p = supernet_plan(supernet_cfg, train_cfg.epochs), search_plan(search_cfg)
    pre = _checkpoint(supernet_checkpoint) if supernet_checkpoint is not None else None
    job = _job("run", data, teachers, seed=seed, out=out, train=train_cfg, batching=batch_cfg,
               tensorboard=tensorboard, supernet=supernet_cfg, search=search_cfg, pipeline=pipeline_cfg,
               terms=[t.spec() for t in parsed], ce_weight=ce_weight)
    metrics = run_pipeline(job, supernet=supernet_p, search=search_p, pipeline=pipeline_cfg, terms=parsed,
                           ce_weight=ce_weight, supernet_checkpoint=pre)
    student = job.run.path / "student"
    return RunResult(load_subnet(student).eval(), json.loads((student / "arch.json").read_text())["arch"],
                     _rows(job.run.path / "search" / "candidates.jsonl"), metrics, job.run.path)
