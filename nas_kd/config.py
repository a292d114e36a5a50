"""Recipes: YAML files validated into typed dataclasses, with ``--set key.sub=value`` overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from nas_kd.errors import UserError
from nas_kd.typecheck import build_dataclass, ge, gt


class RecipeError(UserError):
    """A recipe is invalid; the message names the file and the key."""


@dataclass
class DataConfig:
    """Which dataset, where it lives, how it is split, batched and augmented."""

    dataset: str = "fashion-mnist"
    root: str | None = None  # default: $NAS_KD_DATA, else the dataset's Debian install path
    val_size: int = field(default=5000, metadata=ge(0))
    split_seed: int = 0
    batch_size: int = field(default=128, metadata=ge(1))
    eval_batch_size: int = field(default=1000, metadata=ge(1))
    augment_pad: int = field(default=2, metadata=ge(0))  # random-crop padding in pixels; 0 disables cropping
    flip: bool = True  # horizontal flips, only where the dataset allows them
    limit_train: int | None = field(default=None, metadata=ge(1))
    limit_val: int | None = field(default=None, metadata=ge(1))  # None: with limit_train, a fifth of it
    limit_test: int | None = field(default=None, metadata=ge(1))
    memory_limit_mb: float = field(default=4096, metadata=ge(0))  # an image-folder dataset whose float images exceed this streams from disk
    workers: int = field(default=2, metadata=ge(0))  # processes decoding a streamed dataset's training batches
    synthetic: str | None = None  # a dataset of nas-kd synthesize: train on it, test on the real test split


@dataclass
class TeacherConfig:
    """The fixed teacher: a built-in model, a user factory + state dict, or a TorchScript file."""

    model: str = "resnet_fmnist"  # a name in nas_kd.models.MODELS, or 'package.module:function'
    kwargs: dict = field(default_factory=dict)
    checkpoint: str | None = None  # state dict (or nas-kd checkpoint) to load
    torchscript: str | None = None  # a TorchScript file; replaces model/kwargs/checkpoint (logit methods only)
    subnet: str | None = None  # an exported subnet directory (arch.json + weights.pt); replaces model/checkpoint
    stages: list[str] = field(default_factory=lambda: ["stem", "stage1", "stage2", "stage3", "stage4"])  # its modules that stage-paired methods compare (only they need any)
    preprocess: str | dict = "data"  # what its inputs must be: data (the data's normalisation, as the students see them), none (images in [0, 1]) or {mean: [...], std: [...]} (its own)


@dataclass
class TrainConfig:
    """Optimisation schedule shared by the trainers."""

    epochs: int = field(default=20, metadata=ge(0))
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = field(default=0.1, metadata=gt(0))
    momentum: float = field(default=0.9, metadata=ge(0, 1))
    nesterov: bool = True
    weight_decay: float = field(default=5e-4, metadata=ge(0))  # never applied to BatchNorm parameters or biases
    warmup_epochs: float = field(default=1.0, metadata=ge(0))
    label_smoothing: float = field(default=0.0, metadata=ge(0, 1))
    channels_last: bool = True
    checkpoint_every_steps: int = field(default=0, metadata=ge(0))  # 0: only at the end of each epoch
    threads: int | None = field(default=None, metadata=ge(1))  # torch intra-op threads; default: torch's choice
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    amp: bool = True  # bfloat16 autocast on CUDA (ignored on CPU)
    cache_teacher: bool = True  # without augmentation, compute teachers' logits once per run (nas-kd distill)
    cache_teacher_features_mb: int = field(default=4096, metadata=ge(0))  # ... and the feature maps feature methods read, stored in float16, when they fit in this many MB (else computed every step)


@dataclass
class SupernetConfig:
    """Supernet training: which space, which method (``mode``, with its own options: what it distils, how it
    samples), and what every method shares (BatchNorm recalibration, evaluation, checkpoints)."""

    space: str = "mbv2"
    mode: str | dict = "sandwich"  # a name of nas_kd.train.SUPERNET_TRAINERS (sandwich, spos, progressive, cream, blockwise), or {name, ...its options}, e.g. {name: sandwich, num_random: 2, soft_labels: teacher, distill: [{name: alpha_div}]}
    kernel_transform: bool = False
    bn_batches: int = field(default=20, metadata=ge(1))  # batches for BatchNorm recalibration before each evaluation
    eval_random_archs: int = field(default=2, metadata=ge(0))  # fixed random archs evaluated each epoch besides max and min
    keep_epoch_checkpoints: bool = False  # also save checkpoints/epochNNN.pt (supernet only) after each epoch


@dataclass
class StudentConfig:
    """One network trained stand-alone (``distill``, ``train-arch``, ground truth, fine-tuning an export)."""

    space: str = "resnet"
    arch: str = "min"  # max | min | a JSON file holding an arch (or {"arch": ...})
    ce_weight: float = field(default=1.0, metadata=ge(0))  # weight of the hard-label cross-entropy; the recipe's distill terms add to it


@dataclass
class SearchConfig:
    """``nas-kd search``: which supernet, evaluator, strategy and budget; strategy options."""

    checkpoint: str = "runs/supernet_fmnist/checkpoints/last.pt"  # a trained supernet
    evaluator: str | dict = "kl"  # what is optimised: a name of nas_kd.evaluators, or {name, ...its options}
    extra_evaluators: list[str | dict] = field(default_factory=list)  # also computed for every candidate
    strategy: str | dict = "evolution"  # a name of nas_kd.search.STRATEGIES, or {name, ...its options}, e.g. {name: evolution, population: 20}
    budget_mflops: float | None = field(default=None, metadata=gt(0))  # None: the max arch's FLOPs
    budget_ms: float | None = field(default=None, metadata=gt(0))  # latency budget (predicted from latency_table); None: none
    budget_arch: str | dict | None = None  # instead of budget_ms: this arch's latency (a JSON file or mapping), timed beside the table's anchors when the search starts
    latency_table: str | None = None  # a table from nas-kd latency-table (this machine, batch size, threads)
    measure_top: int = field(default=10, metadata=ge(1))  # with budget_ms: candidates timed, in score order, until one meets it
    runtime: Literal["torch", "onnxruntime", "onnxruntime-int8", "openvino", "openvino-int8"] = "torch"  # what the student is deployed with: the latency table must be timed with it
    trials: int = field(default=100, metadata=ge(1))  # distinct archs scored
    probe_size: int = field(default=500, metadata=ge(3))
    bn_batches: int = field(default=20, metadata=ge(1))
    storage: str | None = None  # Optuna RDB URL; default sqlite:///<run dir>/study.db
    dna_tables: str | None = None  # blockwise ranking for the dna evaluators and dna-exhaustive
    study_name: str | None = None  # default: <evaluator>-<strategy>-<budget>


@dataclass
class RankCorrConfig:
    """The search-quality study: budget bands of archs, their trained ground truth, supernet checkpoints, evaluators."""

    bands: list[float] = field(default_factory=lambda: [0.06, 0.12, 0.25])  # budgets B as fractions of max FLOPs
    archs_per_band: int = field(default=16, metadata=ge(1))  # archs per band, FLOPs in [floor B, B], stratified, seeded
    band_floor: float = field(default=0.8, metadata=gt(0, 1))  # a band's archs have at least this x its budget B
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # ground-truth training seeds per arch
    columns: list[str] = field(default_factory=lambda: ["kd", "scratch"])  # kd: the recipe's distill terms
    records: str = "results/search_quality/ground_truth"  # one committed JSON per (arch, column, seed)
    out: str = "results/search_quality"  # where nas-kd rank-corr writes rankcorr.json, summary.json, README, plots
    dna_tables: str | None = None  # blockwise ranking tables (nas-kd dna-rank) for the dna evaluators
    queue: str | None = None  # Optuna RDB URL of the job queue; default sqlite:///<run dir>/queue.db
    supernet_run: str = "runs/supernet_fmnist"  # a supernet run with checkpoints/epochNNN.pt, or one checkpoint
    epochs: list[int] | None = None  # the supernet epochs to score (None: every checkpoint of supernet_run)
    evaluators: list[str | dict] = field(default_factory=lambda: ["accuracy", "kl", "rdm", "cka", "flops"])
    probe_size: int = field(default=500, metadata=ge(3))  # validation images for kl / rdm / cka
    bn_batches: int = field(default=20, metadata=ge(1))
    bootstrap: int = field(default=1000, metadata=ge(1))  # resamples for the 95% intervals


@dataclass
class AcceptanceConfig:
    """``nas-kd acceptance``: how the students a user would pick without search are chosen, and seeds per student."""

    seeds: int = field(default=3, metadata=ge(2))  # training seeds per student (0 .. seeds - 1); --seeds overrides
    random_pool: int = field(default=10, metadata=ge(1))  # random_best: the best of the band's first this many archs
    maxflops_trials: int = field(default=600, metadata=ge(1))  # archs the FLOPs-maximising search scores
    search_repeats: int = field(default=1, metadata=ge(1))  # searches (seeds seed ..) whose picks are all trained; --search-repeats overrides


@dataclass
class PipelineConfig:
    """``nas-kd run``: where the supernet comes from, the budget, and the student's final distillation."""

    supernet_checkpoint: str | None = None  # a trained supernet to start from when it matches (else one is trained)
    budget_fraction_of_teacher: float | None = field(default=None, metadata=gt(0, 1))  # budget = this x the teacher's FLOPs (if search.budget_mflops unset)
    latency_fraction_of_teacher: float | None = field(default=None, metadata=gt(0, 1))  # search.budget_ms = this x the teacher's batch-1 latency measured here
    finetune_epochs: int = field(default=1, metadata=ge(0))  # distillation of the exported student with the recipe's distill terms (0: none)
    finetune_lr: float = field(default=0.01, metadata=gt(0))
    teacher_check: bool = True  # measure the teacher on the validation split before training; stop when it is near chance or far below teacher_accuracy
    teacher_accuracy: float | None = field(default=None, metadata=gt(0, 1))  # what you expect the teacher to score on this data (fraction): nas-kd run stops before training when it measures far below (teacher_accuracy_margin)
    teacher_accuracy_margin: float = field(default=0.05, metadata=ge(0, 1))  # how far below teacher_accuracy the measured validation accuracy may be
    quantize: bool = False  # also make the int8 student (nas-kd quantize: post-training and QAT+KD, one seed)
    quantize_epochs: int = field(default=1, metadata=ge(1))  # its quantisation-aware distillation epochs
    quantize_lr: float = field(default=5e-4, metadata=gt(0))  # their learning rate (BatchNorm folded: far below finetune_lr)
    baselines: list[str | dict] = field(default_factory=list)  # pruning criteria (nas-kd prune's, e.g. [l1, fpgm]): the teacher pruned by each to the student's FLOPs and fine-tuned alike, beside it in the summary


@dataclass
class RunConfig:
    """Where a run writes its outputs."""

    out_dir: str = "runs"
    name: str = "run"
    tensorboard: bool = False  # also write TensorBoard scalars (the tensorboard extra) beside metrics.jsonl


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
    acceptance: AcceptanceConfig = field(default_factory=AcceptanceConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """Plain-data form (what is saved beside a run)."""
        return dataclasses.asdict(self)


def apply_override(data: dict, assignment: str) -> None:
    """Apply one ``key.sub=value`` override to nested ``data`` (value parsed as YAML)."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment!r}: expected key.sub=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        if isinstance(node.get(part), str):  # a component given by name only: its options go beside the name
            node[part] = {"name": node[part]}
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise RecipeError(f"--set {assignment!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise RecipeError(f"--set {assignment!r}: the value is not valid YAML ({yaml_problem(e)}; quote a string, "
                          "close a [list] or {mapping})") from None


def yaml_problem(e: yaml.YAMLError) -> str:
    """One line saying what is wrong in a YAML text and where."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


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
    return build_dataclass(type(recipe), data, "", RecipeError)


def load_recipe(path: str | Path | None, overrides: list[str] = (), cls: type = Recipe,
                migrate: Callable[[dict, str], None] | None = None) -> Any:
    """Load and validate a recipe file (``None``: defaults only), then apply ``overrides``.

    Errors name the file and the key: unknown keys (with a close match), wrong types and
    missing required keys all raise :class:`RecipeError`. ``migrate(data, where)`` rewrites older spellings of
    the raw mapping in place before it is validated (the recipe layer's :func:`nas_kd.recipe_checks.migrate`).
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
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise RecipeError(f"{path}: not valid YAML ({yaml_problem(e)})") from None
        if data is None:
            raise RecipeError(f"{path}: the recipe is empty (nothing but comments?): start from one of recipes/, "
                              "e.g. nas-kd run --recipe recipes/quickstart.yaml")
        if not isinstance(data, dict):
            raise RecipeError(f"{path}: a recipe must be a mapping of sections")
    for assignment in overrides:
        apply_override(data, assignment)
    if migrate is not None:
        migrate(data, where)
    try:
        return build_dataclass(cls, data, "", RecipeError)
    except RecipeError as e:
        raise RecipeError(f"{where}: {e}") from None


def dump_recipe(recipe: Any, path: str | Path) -> None:
    """Write the resolved recipe as YAML."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(recipe), sort_keys=False))
