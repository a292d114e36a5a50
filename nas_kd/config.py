"""Recipes: YAML files validated into typed dataclasses, with ``--set key.sub=value`` overrides."""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nas_kd.errors import UserError


class RecipeError(UserError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class DataConfig:
    """Which dataset, where it lives, how it is split, batched and augmented."""

    dataset: str = "fashion-mnist"
    root: str | None = None  # default: $NAS_KD_DATA, else the dataset's Debian install path
    val_size: int = 5000
    split_seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 1000
    augment_pad: int = 2  # random-crop padding in pixels; 0 disables cropping
    flip: bool = True  # horizontal flips, only where the dataset allows them
    limit_train: int | None = None
    limit_test: int | None = None
    memory_limit_mb: float = 4096  # an image-folder dataset whose float images exceed this streams from disk
    workers: int = 2  # processes decoding a streamed dataset's training batches


@dataclass
class TeacherConfig:
    """The fixed teacher: a built-in model, a user factory + state dict, or a TorchScript file."""

    model: str = "resnet_fmnist"  # a name in nas_kd.models.MODELS, or 'package.module:function'
    kwargs: dict = field(default_factory=dict)
    checkpoint: str | None = None  # state dict (or nas-kd checkpoint) to load
    torchscript: str | None = None  # a TorchScript file; replaces model/kwargs/checkpoint (logit methods only)
    subnet: str | None = None  # an exported subnet directory (arch.json + weights.pt); replaces model/checkpoint
    stages: list[str] = field(default_factory=lambda: ["stem", "stage1", "stage2", "stage3", "stage4"])


@dataclass
class TrainConfig:
    """Optimisation schedule shared by the trainers."""

    epochs: int = 20
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4  # never applied to BatchNorm parameters or biases
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    channels_last: bool = True
    checkpoint_every_steps: int = 0  # 0: only at the end of each epoch
    threads: int | None = None  # torch intra-op threads; default: torch's choice
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    cache_teacher: bool = True  # without augmentation, compute teachers' logits once per run (nas-kd distill)


@dataclass
class SupernetConfig:
    """Sandwich-rule supernet training: which space, how many subnets per step, who teaches them."""

    space: str = "mbv2"
    mode: str = "sandwich"  # sandwich (one supernet, in-place / teacher distillation) | blockwise (DNA)
    kernel_transform: bool = False
    num_random: int = 2  # random subnets per step, besides the max and the min
    distill: list[dict] = field(default_factory=lambda: [{"name": "alpha_div"}])  # logit terms teaching non-max subnets
    soft_labels: str = "inplace"  # inplace (max subnet) | teacher (fixed teacher) | mix | none (hard labels)
    mix_weight: float = 0.5  # with soft_labels=mix: weight of the fixed teacher
    max_teacher_weight: float = 0.0  # weight of KD from the fixed teacher on the max subnet
    bn_batches: int = 20  # batches for BatchNorm recalibration before each evaluation
    eval_random_archs: int = 2  # fixed random archs evaluated each epoch besides max and min
    sampler: str = "uniform"  # uniform | flops (random subnets stratified over the space's FLOPs range)
    keep_epoch_checkpoints: bool = False  # also save checkpoints/epochNNN.pt (supernet only) after each epoch


@dataclass
class StudentConfig:
    """One network trained stand-alone (``distill``, ``train-arch``, ground truth, fine-tuning an export)."""

    space: str = "resnet"
    arch: str = "min"  # max | min | a JSON file holding an arch (or {"arch": ...})
    ce_weight: float = 1.0  # weight of the hard-label cross-entropy; the recipe's distill terms add to it


@dataclass
class SearchConfig:
    """``nas-kd search``: which supernet, evaluator, strategy and budget; strategy options."""

    checkpoint: str = "runs/supernet_fmnist/checkpoints/last.pt"  # a trained supernet
    evaluator: str = "kl"  # what is optimised (nas_kd.evaluators)
    extra_evaluators: list[str] = field(default_factory=list)  # also computed for every candidate
    strategy: str = "evolution"  # a name of nas_kd.search.STRATEGIES
    budget_mflops: float | None = None  # None: the max arch's FLOPs
    budget_ms: float | None = None  # latency budget (predicted from latency_table); None: none
    latency_table: str | None = None  # a table from nas-kd latency-table (this machine, batch size, threads)
    trials: int = 100  # distinct archs scored
    probe_size: int = 500
    bn_batches: int = 20
    strategy_options: dict = field(default_factory=dict)  # the strategy's own options, e.g. {population: 20}
    evaluator_options: dict = field(default_factory=dict)  # rdm_method, rdm_proj_dim, pairing, free_batch
    storage: str | None = None  # Optuna RDB URL; default sqlite:///<run dir>/study.db
    dna_tables: str | None = None  # blockwise ranking for the dna evaluators and dna-exhaustive
    study_name: str | None = None  # default: <evaluator>-<strategy>-<budget>


@dataclass
class RankCorrConfig:
    """The search-quality study: budget bands of archs, their trained ground truth, supernet checkpoints, evaluators."""

    bands: list[float] = field(default_factory=lambda: [0.06, 0.12, 0.25])  # budgets B as fractions of max FLOPs
    archs_per_band: int = 16  # archs per band, FLOPs in [0.8 B, B], stratified and seeded
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # ground-truth training seeds per arch
    columns: list[str] = field(default_factory=lambda: ["kd", "scratch"])  # kd: the recipe's distill terms
    records: str = "results/search_quality/ground_truth"  # one committed JSON per (arch, column, seed)
    out: str = "results/search_quality"  # where nas-kd rank-corr writes rankcorr.json, summary.json, README, plots
    dna_tables: str | None = None  # blockwise ranking tables (nas-kd dna-rank) for the dna evaluators
    queue: str | None = None  # Optuna RDB URL of the job queue; default sqlite:///<run dir>/queue.db
    supernet_run: str = "runs/supernet_fmnist"  # a supernet run with checkpoints/epochNNN.pt, or one checkpoint
    epochs: list[int] | None = None  # the supernet epochs to score (None: every checkpoint of supernet_run)
    evaluators: list[str] = field(default_factory=lambda: ["accuracy", "kl", "rdm", "cka", "flops"])
    probe_size: int = 500  # validation images for kl / rdm / cka
    bn_batches: int = 20
    bootstrap: int = 1000  # resamples for the 95% intervals


@dataclass
class PipelineConfig:
    """``nas-kd run``: where the supernet comes from, the budget, and the student's final distillation."""

    supernet_checkpoint: str | None = None  # a trained supernet to start from when it matches (else one is trained)
    budget_fraction_of_teacher: float | None = None  # budget = this x the teacher's FLOPs (if search.budget_mflops unset)
    finetune_epochs: int = 1  # distillation of the exported student with the recipe's distill terms (0: none)
    finetune_lr: float = 0.01


@dataclass
class RunConfig:
    """Where a run writes its outputs."""

    out_dir: str = "runs"
    name: str = "run"


@dataclass
class Recipe:
    """A complete run configuration; each command reads the sections it needs."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    extra_teachers: list[TeacherConfig] = field(default_factory=list)  # more teachers (multi_teacher)
    distill: list[dict] = field(default_factory=list)  # terms {name, weight, ...options} (nas_kd.distill)
    train: TrainConfig = field(default_factory=TrainConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    rankcorr: RankCorrConfig = field(default_factory=RankCorrConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """Plain-data form (what is saved beside a run)."""
        return dataclasses.asdict(self)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except RecipeError as e:
                if "must be" in str(e):  # the type fits but the value does not: say why
                    raise
        raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # PyYAML reads 5e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is float and not math.isfinite(value):
        raise RecipeError(f"{where}: must be a finite number, got {value!r}")
    return value


# Allowed ranges of numbers, by key: (lowest, highest, whether the lowest itself is excluded); None: unbounded.
RANGES: dict[str, tuple[float | None, float | None, bool]] = {
    "data.val_size": (0, None, False), "data.batch_size": (1, None, False), "data.eval_batch_size": (1, None, False),
    "data.augment_pad": (0, None, False), "data.limit_train": (1, None, False), "data.limit_test": (1, None, False),
    "data.memory_limit_mb": (0, None, False), "data.workers": (0, None, False),
    "train.epochs": (0, None, False), "train.lr": (0, None, True), "train.momentum": (0, 1, False),
    "train.weight_decay": (0, None, False), "train.warmup_epochs": (0, None, False),
    "train.label_smoothing": (0, 1, False), "train.checkpoint_every_steps": (0, None, False),
    "train.threads": (1, None, False), "supernet.num_random": (0, None, False), "supernet.mix_weight": (0, 1, False),
    "supernet.max_teacher_weight": (0, None, False), "supernet.bn_batches": (1, None, False),
    "supernet.eval_random_archs": (0, None, False), "student.ce_weight": (0, None, False),
    "search.budget_mflops": (0, None, True), "search.budget_ms": (0, None, True), "search.trials": (1, None, False), "search.probe_size": (3, None, False),
    "search.bn_batches": (1, None, False), "rankcorr.archs_per_band": (1, None, False),
    "rankcorr.probe_size": (3, None, False), "rankcorr.bn_batches": (1, None, False), "rankcorr.bootstrap": (1, None, False),
    "pipeline.budget_fraction_of_teacher": (0, 1, True), "pipeline.finetune_epochs": (0, None, False),
    "pipeline.finetune_lr": (0, None, True),
}


def _check_range(key: str, value: Any) -> None:
    if key not in RANGES or value is None:
        return
    lo, hi, lo_open = RANGES[key]
    if (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi):
        low = "" if lo is None else f"{'>' if lo_open else '>='} {lo}"
        high = "" if hi is None else f"<= {hi}"
        raise RecipeError(f"{key}: must be {' and '.join(x for x in (low, high) if x)}, got {value!r}")


def _build(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise RecipeError(f"{where}: unknown key {key!r}{hint}; allowed: {', '.join(names)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        sub = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], sub)
            _check_range(sub, kwargs[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where or 'recipe'}: missing required key {f.name!r}")
    return cls(**kwargs)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``key.sub=value`` override to nested ``data`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected key.sub=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {assignment!r}: {part!r} is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def derive(recipe: Any, changes: dict[str, Any]) -> Any:
    """A new recipe: ``recipe`` with ``changes`` (``{"train.epochs": 3, "run.name": "x"}``) applied, validated like
    a recipe file (types, ranges); ``recipe`` itself is left as it was."""
    data = dataclasses.asdict(recipe)
    for key, value in changes.items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        if last not in node:
            raise RecipeError(f"derive: {key!r} is not a recipe key")
        node[last] = value
    return _build(type(recipe), data, "")


def load_recipe(path: str | Path | None, overrides: list[str] = (), cls: type = Recipe) -> Any:
    """Load and validate a recipe file (``None``: defaults only), then apply ``overrides``.

    Errors name the file and the key: unknown keys (with a close match), wrong types and
    missing required keys all raise :class:`RecipeError`.
    """
    data: dict = {}
    where = "recipe"
    if path is not None:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise RecipeError(f"{path}: cannot read recipe ({e.strerror})") from None
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML ({e})") from None
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    for assignment in overrides:
        apply_override(data, assignment)
    try:
        return _build(cls, data, "")
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from None


def dump_recipe(recipe: Any, path: str | Path) -> None:
    """Write the resolved recipe as YAML."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
