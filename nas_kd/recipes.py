"""The recipe layer: a checked :class:`~nas_kd.config.Recipe` made into the objects the library takes (a
:class:`~nas_kd.job.Job`, parsed distillation terms, its sections), then the library called with them. The
command line and the studies (which derive a recipe per job, so that every record can be regenerated from its
own recipe) go through here; nothing below this layer reads a whole recipe.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import search_spaces
from nas_kd.checkpoint import load_checkpoint
from nas_kd.config import Recipe
from nas_kd.data import DataBundle, load_data
from nas_kd.distill import Term
from nas_kd.errors import BudgetError, UserError
from nas_kd.evaluators import build_evaluators
from nas_kd.job import Job, RunSpec
from nas_kd.plans import pruner, search_plan, supernet_plan, terms
from nas_kd.search.plan import SearchPlan
from nas_kd.registry import split_component
from nas_kd.search.strategies import STRATEGIES
from nas_kd.students import Student
from nas_kd.subnet import shape_text
from nas_kd.teacher import teacher_from

if TYPE_CHECKING:
    from nas_kd.rankcorr.ground_truth import Study


def run_spec(recipe: Recipe) -> RunSpec:
    """``<run.out_dir>/<run.name>``, defined by the resolved recipe."""
    return RunSpec(Path(recipe.run.out_dir) / recipe.run.name, recipe.to_dict(), recipe.run.tensorboard)


def job_of(recipe: Recipe, data: DataBundle | None = None) -> Job:
    """The recipe's job: its data (loaded unless given), teachers (``teacher`` then ``extra_teachers``, loaded on
    first use), ``train`` and ``data`` sections, seed and run directory."""
    data = load_data(recipe.data) if data is None else data
    teachers = tuple(teacher_from(t, data) for t in (recipe.teacher, *recipe.extra_teachers))
    return Job(data=data, run=run_spec(recipe), train=recipe.train, batching=recipe.data, seed=recipe.seed,
               teachers=teachers)


def terms_of(recipe: Recipe) -> list[Term]:
    """The recipe's ``distill`` terms, parsed."""
    return terms(recipe.distill)


def distill(recipe: Recipe, student: Student, **kwargs: Any) -> dict[str, Any]:
    """:func:`nas_kd.train.distill.train_students` with the recipe's job, ``distill`` terms and ``student.ce_weight``."""
    from nas_kd.train.distill import train_students

    terms = terms_of(recipe)
    return train_students(job_of(recipe), student, terms=terms, ce_weight=recipe.student.ce_weight, **kwargs)


def train_teacher(recipe: Recipe, **kwargs: Any) -> dict[str, Any]:
    """Train the recipe's ``teacher.model`` (:func:`nas_kd.train.standalone.train_teacher`)."""
    from nas_kd.train.standalone import train_teacher as train

    terms = terms_of(recipe)
    return train(job_of(recipe), recipe.teacher, terms=terms, ce_weight=recipe.student.ce_weight, **kwargs)


def train_arch(recipe: Recipe, arch: str | dict | None = None, **kwargs: Any) -> dict[str, Any]:
    """Train ``arch`` (default ``student.arch``) of ``student.space`` with the recipe's distill terms."""
    from nas_kd.train.standalone import train_arch as train

    terms = terms_of(recipe)
    return train(job_of(recipe), recipe.student.space, recipe.student.arch if arch is None else arch, terms=terms,
                 ce_weight=recipe.student.ce_weight, **kwargs)


def train_supernet(recipe: Recipe, **kwargs: Any) -> dict[str, Any]:
    """Train the recipe's supernet by its ``supernet.mode`` (``kwargs``: ``resume``, ``on_step``,
    ``show_progress``)."""
    plan = supernet_plan(recipe.supernet, recipe.train.epochs)
    return plan.trainer.train(job_of(recipe), plan.cfg, **kwargs)


def search(recipe: Recipe, *, show_progress: bool = True, report_only: bool = False) -> dict[str, Any]:
    """Run the recipe's ``search`` (:func:`nas_kd.search.run.run_search`), or with ``report_only`` rewrite its
    outputs from its shared study (:func:`nas_kd.search.run.search_report`)."""
    from nas_kd.search.run import run_search, search_report

    plan = search_plan(recipe.search)
    if report_only:
        return search_report(plan, run_spec(recipe))
    return run_search(job_of(recipe), plan, show_progress=show_progress)


def export(checkpoint: str | Path, arch: str | dict, out: str | Path, recipe: Recipe | None = None,
           **kwargs: Any) -> dict[str, Any]:
    """:func:`nas_kd.train.standalone.export_student`; the recipe (when given) supplies the data, the fine-tune's
    settings and its distill terms."""
    from nas_kd.train.standalone import export_student

    if recipe is None:
        return export_student(checkpoint, arch, out, **kwargs)
    needs_data = kwargs.get("recalibrate_batches") or kwargs.get("finetune_epochs")
    job = job_of(recipe) if needs_data else None
    return export_student(checkpoint, arch, out, job=job, terms=terms_of(recipe), ce_weight=recipe.student.ce_weight,
                          **kwargs)


def rank_stages(recipe: Recipe, checkpoint: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """DNA's ranking tables of a blockwise supernet (:func:`nas_kd.dna.ranking.rank_stages`) with the recipe's
    teacher and data."""
    from nas_kd.dna.ranking import rank_stages as rank

    return rank(job_of(recipe), checkpoint, out, bn_batches=recipe.supernet.bn_batches,
                probe_size=recipe.search.probe_size, **kwargs)


def quantize(recipe: Recipe, student_dir: str | Path, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`nas_kd.train.quantize.quantize_student` with the recipe's job and distill terms."""
    from nas_kd.train.quantize import quantize_student

    return quantize_student(job_of(recipe), student_dir, out, terms=terms_of(recipe),
                            ce_weight=recipe.student.ce_weight, **kwargs)


def prune(recipe: Recipe, criterion: str | dict, out: str | Path, *, budget_mflops: float | None = None,
          budget_fraction: float | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`nas_kd.train.prune.prune_network` on the recipe's teacher (``teacher.model`` with its
    ``teacher.checkpoint``), to ``budget_mflops`` or ``budget_fraction`` of its FLOPs, fine-tuned with the recipe's
    distill terms and ``student.ce_weight`` (``kwargs``: ``finetune_epochs``, ...). Every input is checked before any
    work."""
    import torch

    from nas_kd.flops import teacher_fraction_mflops
    from nas_kd.teacher import load_teacher
    from nas_kd.train.prune import prune_network

    name, method, spec = pruner(criterion, "--pruner")
    t = recipe.teacher
    if t.subnet or t.torchscript or t.preprocess != "data":
        raise UserError("nas-kd prune cuts teacher.model with its teacher.checkpoint, fed the data's normalisation "
                        "(teacher.preprocess: data); this recipe's teacher is a subnet, TorchScript or differently fed")
    if (budget_mflops is None) == (budget_fraction is None):
        raise UserError("nas-kd prune: give one budget, --budget-mflops or --budget-fraction")
    job = job_of(recipe)
    data = job.data
    network = load_teacher(t, data.num_classes, data.in_channels)
    for p in network.parameters():
        p.requires_grad_(True)  # it will be trained: a fresh copy, not the job's teacher
    budget = budget_mflops if budget_mflops is not None else teacher_fraction_mflops(network, data.input_shape,
                                                                                      budget_fraction)
    whole = teacher_fraction_mflops(network, data.input_shape, 1.0)
    if budget >= whole:
        raise BudgetError(f"budget {budget:g} MFLOPs: the teacher has {whole:.3f} MFLOPs already, nothing to prune")
    torch.manual_seed(recipe.seed)
    origin = {"model": t.model, "kwargs": t.kwargs, "num_classes": data.num_classes, "in_channels": data.in_channels,
              "checkpoint": t.checkpoint}
    return prune_network(job, network, origin, method, spec, budget, out,
                         terms=terms_of(recipe), ce_weight=recipe.student.ce_weight, **kwargs)


def specialists(recipe: Recipe, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """:func:`nas_kd.specialists.train_specialists` with the recipe's job and teacher."""
    from nas_kd.specialists import train_specialists

    return train_specialists(job_of(recipe), recipe.teacher, out, **kwargs)


def study_of(recipe: Recipe) -> "Study":
    """The search-quality study a recipe describes: its job, ``student.space``, the ``kd`` column's ``distill`` terms
    and ``student.ce_weight``, and its ``rankcorr`` section."""
    from nas_kd.rankcorr.ground_truth import Study

    return Study(job_of(recipe), recipe.student.space, tuple(terms_of(recipe)), recipe.student.ce_weight,
                 recipe.rankcorr, tuple(build_evaluators(recipe.rankcorr.evaluators, "rankcorr.evaluators")))


def acceptance_plans(recipe: Recipe, evaluator: str | dict, strategy: str | dict) -> tuple[SearchPlan, SearchPlan]:
    """The two searches of ``nas-kd acceptance``: the searched student's (the recipe's ``search`` with ``evaluator``
    and ``strategy``; the recipe's strategy options kept when it names the same strategy) and the FLOPs-maximising
    one (``flops`` + ``evolution``)."""
    base = recipe.search
    same = split_component(base.strategy, "search.strategy", STRATEGIES)[0] == \
        split_component(strategy, "--strategy", STRATEGIES)[0]
    searched = dataclasses.replace(base, evaluator=evaluator, strategy=base.strategy if same else strategy,
                                   extra_evaluators=[])
    maxflops = dataclasses.replace(base, evaluator="flops", strategy="evolution", extra_evaluators=[])
    return search_plan(searched, "acceptance"), search_plan(maxflops, "acceptance")


TEACHER_KEYS = ("model", "kwargs", "checkpoint", "torchscript", "subnet")


def supernet_mismatches(recipe: Recipe, checkpoint: str | Path, num_classes: int,
                        input_shape: tuple[int, int, int]) -> list[str]:
    """Why the trained supernet at ``checkpoint`` does not fit ``recipe`` and its data (empty: it does): its space,
    shape and classes, and the recipe it was trained with (the record beside it): teacher, mode, dataset."""
    path = Path(checkpoint)
    if not path.exists():
        return [f"{path} does not exist"]
    ckpt = load_checkpoint(path)
    meta = ckpt.get("supernet") or ckpt.get("blockwise") or {}
    found = []
    if meta.get("space") != recipe.supernet.space:
        found.append(f"space: the checkpoint has {meta.get('space')!r}, the recipe needs {recipe.supernet.space!r}")
    elif (space := search_spaces.from_meta(meta)).num_classes != num_classes:
        found.append(f"num_classes: the checkpoint has {space.num_classes}, the data has {num_classes}")
    elif space.input_shape != tuple(input_shape):
        found.append(f"input_shape: the checkpoint has {shape_text(space.input_shape)}, "
                     f"the data has {shape_text(input_shape)}")
    record = path.with_suffix(".json")
    if not record.exists():
        return [*found, f"no {record.name} beside it to say which teacher and data trained it"]
    trained = json.loads(record.read_text()).get("recipe", {})
    for key in TEACHER_KEYS:
        if trained.get("teacher", {}).get(key) != getattr(recipe.teacher, key):
            found.append(f"teacher.{key}: trained with {trained.get('teacher', {}).get(key)!r}, "
                         f"the recipe has {getattr(recipe.teacher, key)!r}")
    mode = _mode_name(trained.get("supernet", {}).get("mode", "sandwich"))
    if mode != _mode_name(recipe.supernet.mode):
        found.append(f"supernet.mode: trained by {mode!r}, the recipe has {_mode_name(recipe.supernet.mode)!r}")
    if trained.get("data", {}).get("dataset") != recipe.data.dataset:
        found.append(f"data.dataset: trained on {trained.get('data', {}).get('dataset')!r}")
    return found


def _mode_name(spec: str | dict) -> str:
    return spec.get("name") if isinstance(spec, dict) else spec


def pipeline(recipe: Recipe, *, train_supernet_anyway: bool = False) -> dict[str, Any]:
    """``nas-kd run`` (:func:`nas_kd.pipeline.run_pipeline`): the teacher is trained first when
    ``teacher.checkpoint`` is unset (a path that does not exist is an error), and ``pipeline.supernet_checkpoint`` is searched instead of
    training a supernet when it matches the recipe (:func:`supernet_mismatches`; a mismatch is named and a
    supernet trained)."""
    import sys

    from nas_kd.pipeline import run_pipeline

    cfg = recipe.teacher
    if cfg.checkpoint and not cfg.subnet and not cfg.torchscript and not Path(cfg.checkpoint).exists():
        raise UserError(f"teacher.checkpoint: {cfg.checkpoint} not found (to train the teacher from the labels first, "
                        "run the same command with --set teacher.checkpoint=null)")
    parsed = terms_of(recipe)
    baselines = [pruner(spec, f"pipeline.baselines[{i}]") for i, spec in enumerate(recipe.pipeline.baselines)]
    if baselines and (cfg.subnet or cfg.torchscript):
        raise UserError("pipeline.baselines prune teacher.model with its weights; this recipe's teacher is a subnet "
                        "or TorchScript: drop pipeline.baselines (--set pipeline.baselines=[])")
    job = job_of(recipe)
    to_train = cfg if not cfg.subnet and not cfg.torchscript and not cfg.checkpoint else None
    pre, reuse = recipe.pipeline.supernet_checkpoint, None
    if pre and not train_supernet_anyway and not (job.run.path / "supernet" / "final.json").exists():
        why = supernet_mismatches(recipe, pre, job.data.num_classes, job.data.input_shape)
        if why:
            print(f"nas-kd run: not reusing {pre} ({'; '.join(why)}); training a supernet", file=sys.stderr)
        else:
            reuse = pre
            print(f"nas-kd run: starting from the trained supernet {pre} (it matches the recipe; "
                  "--train-supernet trains one instead)", file=sys.stderr)
    return run_pipeline(job, supernet=supernet_plan(recipe.supernet, recipe.train.epochs),
                        search=search_plan(recipe.search), pipeline=recipe.pipeline, terms=parsed,
                        ce_weight=recipe.student.ce_weight, train_teacher_cfg=to_train, supernet_checkpoint=reuse,
                        teacher_cfg=cfg, baselines=baselines)
