"""Contracts every registered component passes, parametrised over each registry's ``available()``: a component is
covered the moment it is registered (distillers: tests/test_distill.py; spaces: tests/test_spaces.py). Plus every
committed recipe loads and checks."""
import inspect
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import search_spaces
from nas_kd.bench.table import TABLE_KEYS, load_table, row_recipe
from nas_kd.checkpoint import save_checkpoint
from nas_kd.config import load_recipe
from nas_kd.data import DATASETS, DatasetError, load_dataset
from nas_kd.errors import OptionError, UserError
from nas_kd.evaluators import EVALUATORS, EvalContext, build_evaluators, score_archs
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.recipe_checks import load_checked
from nas_kd.registry import Registry
from nas_kd.search import STRATEGIES, Objective
from nas_kd.search.strategies import SearchInputs, Strategy
from nas_kd.supernet import Supernet
from nas_kd.recipes import train_supernet
from nas_kd.train import SUPERNET_TRAINERS

RECIPES = sorted(Path("recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_committed_recipe_loads_and_checks(path):
    """A recipe (or a table file: each of its rows' recipes; or an int8 table) passes every check the commands make
    at load."""
    from nas_kd.bench.int8 import KEYS as INT8_KEYS
    from nas_kd.bench.int8 import load_spec

    keys = set(yaml.safe_load(path.read_text()))
    if TABLE_KEYS <= keys:
        table = load_table(path, "distill")
        for row in table["rows"]:
            row_recipe(table, row, table["seeds"][0])
    elif INT8_KEYS <= keys:
        load_spec(path)
    else:
        load_checked(path)


# --- evaluators -----------------------------------------------------------------------------------------------

STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]


@pytest.fixture(scope="module")
def scoring(synthetic_root, dna_tables):
    """Contexts on one teacher and probe set: with a supernet, with another supernet's weights, with none."""
    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    space = search_spaces.get("resnet")
    torch.manual_seed(0)
    teacher = ResNetTeacher(widths=(8, 8, 8, 8)).eval().requires_grad_(False)

    def context(net):
        return EvalContext.build(net, teacher, data, teacher_stages=STAGES, probe_size=32, bn_batches=1,
                                 batch_size=64, seed=0, channels_last=False, dna_tables=dna_tables)

    contexts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        contexts.append(context(Supernet(space)))
    return (*contexts, context(space), [space.sample(random.Random(i)) for i in range(2)])


@pytest.mark.parametrize("name", EVALUATORS.available())
def test_evaluator_contract(name, scoring):
    """Finite, deterministic, oriented by its direction; the teacher untouched; one that ignores the supernet's
    weights gives the same scores with other weights and with no supernet at all, one that reads them refuses
    to score without a supernet."""
    ctx, other, no_supernet, archs = scoring
    (ev,) = build_evaluators([{"name": name, **EVALUATORS.example(name)}], "e")
    name = ev.name  # its column (with its options)
    rows = score_archs(ctx, archs, [ev])
    assert [r[name] for r in score_archs(ctx, archs, [ev])] == [r[name] for r in rows]
    for r in rows:
        assert np.isfinite(r[f"{name}_raw"]) and r[name] == (1 if ev.higher_is_better else -1) * r[f"{name}_raw"]
    assert not ctx.teacher.training and all(p.grad is None for p in ctx.teacher.parameters())
    if ev.reads_supernet:
        with pytest.raises(UserError, match="read a weight-sharing supernet"):
            score_archs(no_supernet, archs, [ev])
    else:
        assert [r[name] for r in score_archs(other, archs, [ev])] == [r[name] for r in rows]
        assert [r[name] for r in score_archs(no_supernet, archs, [ev])] == [r[name] for r in rows]


@pytest.mark.parametrize("name", EVALUATORS.available())
def test_evaluator_options_are_typed_keyword_only_arguments(name):
    with pytest.raises(OptionError, match=re.escape(f"e: evaluator '{name}' has no option 'nope'")):
        build_evaluators([{"name": name, "nope": 1}], "e")
    (bare,) = build_evaluators([name], "e")
    assert bare.name == name


# --- search strategies ----------------------------------------------------------------------------------------


def toy_objective(budget_mflops=20.0):
    space = search_spaces.get("resnet")
    calls = []

    def score(arch):
        calls.append(arch)
        q = sum(arch[f"stage{i}.width"] * i for i in range(1, 5)) - 20 * arch["stage1.depth"]
        return {"arch": arch, "mflops": space.flops(arch) / 1e6, "mparams": space.params(arch) / 1e6, "q": q}

    return Objective(space, score, "q", budget_mflops * 1e6), calls


@pytest.fixture(scope="module")
def cream_checkpoint(tmp_path_factory):
    """A supernet checkpoint holding a cream board of 12 random paths."""
    space = search_spaces.get("resnet")
    rng = random.Random(5)
    board = [{"arch": space.sample(rng), "acc": 50.0, "mflops": 1.0} for _ in range(12)]
    path = tmp_path_factory.mktemp("cream") / "last.pt"
    save_checkpoint({"model": {}, "extra": {"board": json.loads(json.dumps(board))}}, path)
    return str(path)


def run_strategy(name, obj, trials, tmp_path, tag, dna_tables, scoring, cream_checkpoint, seed=0):
    """``name`` built with its own example options, run on ``obj`` with every input a search gives."""
    strategy = STRATEGIES.build_checked(name, STRATEGIES.example(name), f"search.strategy ({name})")
    return strategy.search(SearchInputs(obj, trials, seed=seed, storage=f"sqlite:///{tmp_path}/{tag}.db",
                                        study_name="t", dna_tables=dna_tables, checkpoint=cream_checkpoint,
                                        context=scoring[0], workdir=tmp_path))


def keys(rows):
    return [json.dumps(r["arch"], sort_keys=True) for r in rows]


@pytest.mark.parametrize("name", STRATEGIES.available())
def test_strategy_contract_budget_trials_order(name, tmp_path, dna_tables, scoring, cream_checkpoint):
    """At most ``trials`` archs scored, none over the budget (proposals over it are never scored), rows best first,
    one row per arch, every row an arch the objective scored."""
    for trials in (1, 8):
        obj, calls = toy_objective()
        rows = run_strategy(name, obj, trials, tmp_path, f"t{trials}", dna_tables, scoring, cream_checkpoint)
        assert rows and len(calls) <= trials
        assert all(obj.space.flops(a) <= 20e6 for a in calls)
        assert [r["q"] for r in rows] == sorted((r["q"] for r in rows), reverse=True)
        assert len(set(keys(rows))) == len(rows) and set(keys(rows)) <= {json.dumps(a, sort_keys=True) for a in calls}


@pytest.mark.parametrize("name", STRATEGIES.available())
def test_strategy_contract_deterministic_per_seed(name, tmp_path, dna_tables, scoring, cream_checkpoint):
    runs = []
    for tag in ("a", "b"):
        obj, _ = toy_objective()
        runs.append(keys(run_strategy(name, obj, 8, tmp_path, tag, dna_tables, scoring, cream_checkpoint)))
    assert runs[0] == runs[1]


class Killed(Exception):
    pass


@pytest.mark.parametrize("name", STRATEGIES.available())
def test_strategy_contract_resumes_from_the_journal(name, tmp_path, dna_tables, scoring, cream_checkpoint):
    """A search killed half-way through its scores and run again on the same journal (and study) scores nothing
    twice and ends with the rows of an uninterrupted search."""
    obj, straight_calls = toy_objective()
    straight = keys(run_strategy(name, obj, 8, tmp_path, "straight", dna_tables, scoring, cream_checkpoint))
    journal = tmp_path / "scored.jsonl"
    space = search_spaces.get("resnet")
    scored = []

    def killing(arch):
        if len(scored) == max(1, len(straight_calls) // 2):
            raise Killed
        scored.append(arch)
        return toy_objective()[0].score_fn(arch)

    if len(straight_calls) < 2:  # a strategy that scores one arch has no half-way point
        return
    with pytest.raises(Killed):
        run_strategy(name, Objective(space, killing, "q", 20e6, journal=journal), 8, tmp_path, "killed", dna_tables,
                     scoring, cream_checkpoint)
    again, calls = toy_objective()
    again.journal = journal
    again.cache.update(Objective(space, killing, "q", 20e6, journal=journal).cache)
    resumed = keys(run_strategy(name, again, 8, tmp_path, "killed", dna_tables, scoring, cream_checkpoint))
    assert not {json.dumps(a, sort_keys=True) for a in calls} & {json.dumps(a, sort_keys=True) for a in scored}
    if STRATEGIES.get(name).replays:
        assert resumed == straight
    else:  # goes on from the trials it has (the study), to as many archs
        assert len(resumed) == len(straight) and set(keys(again.rows())) >= {json.dumps(a, sort_keys=True) for a in scored}


@pytest.mark.parametrize("name", STRATEGIES.available())
def test_strategy_options_are_typed_keyword_only_fields(name):
    """Every option is a typed keyword-only field with a default; an unknown one is refused naming the strategy."""
    cls = STRATEGIES.get(name)
    assert cls.__doc__ and issubclass(cls, Strategy)
    for p in inspect.signature(cls).parameters.values():
        assert p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.annotation is not p.empty
    with pytest.raises(OptionError, match=re.escape(f"s: strategy '{name}' has no option 'nope'")):
        STRATEGIES.build_checked(name, {"nope": 1}, "s")


# --- supernet trainers ----------------------------------------------------------------------------------------


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "t.pt"
    save_checkpoint({"model": ResNetTeacher(widths=(8, 8, 8, 8)).state_dict()}, path)
    return str(path)


@pytest.mark.parametrize("mode", SUPERNET_TRAINERS.available())
def test_supernet_trainer_contract(mode, tmp_path, synthetic_root, tiny_teacher):
    """Each mode trains, writes final.json naming its checkpoint, and a run killed mid-epoch (in its last epoch)
    resumes to the uninterrupted run's weights and final report exactly."""
    def recipe(out):
        return load_recipe("recipes/supernet_fmnist.yaml", [
            f"data.root={synthetic_root}", f"run.out_dir={out}", "run.name=run", "data.limit_train=64",
            "data.val_size=32", "data.limit_test=32", "data.batch_size=32", "train.epochs=1",
            "train.checkpoint_every_steps=1", "supernet.bn_batches=1", "supernet.eval_random_archs=0",
            f"supernet.mode={json.dumps({'name': mode, **SUPERNET_TRAINERS.example(mode)})}",
            f"teacher.checkpoint={tiny_teacher}", 'teacher.kwargs={"widths": [8, 8, 8, 8]}'])

    r = recipe(tmp_path / "a")
    straight = train_supernet(r, show_progress=False)
    assert Path(straight["checkpoint"]).exists() and (tmp_path / "a/run/final.json").exists()

    def stop(loop):
        if loop.state.epoch == r.train.epochs - 1 and loop.state.step == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        train_supernet(recipe(tmp_path / "b"), on_step=stop, show_progress=False)
    resumed = train_supernet(recipe(tmp_path / "b"), resume=True, show_progress=False)
    wa = torch.load(tmp_path / "a/run/checkpoints/last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b/run/checkpoints/last.pt", weights_only=True)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    same = ("max_acc", "min_acc", "median_acc", "board", "sorted", "phases", "final_train_mse")
    assert {k: straight[k] for k in same if k in straight} == {k: resumed[k] for k in same if k in resumed}


# --- datasets -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS.available())
def test_dataset_contract(name, tmp_path):
    """Loads into float images and integer labels of the declared classes, split as asked and seeded; a missing
    root is one DatasetError naming it."""
    root = tmp_path / "data"
    root.mkdir()
    where = DATASETS.get(name).tiny(root)  # each dataset writes its own tiny copy
    d = load_dataset(name, where, val_size=4, split_seed=1)
    again = load_dataset(name, where, val_size=4, split_seed=1)
    assert len(d.val) == 4 and d.train.x.ndim == 4 and d.train.x.dtype == torch.float32
    assert tuple(d.train.x.shape[1:]) == tuple(d.input_shape) and d.in_channels == d.input_shape[0]
    for split in (d.train, d.val, d.test):
        assert split.y.dtype == torch.long and 0 <= int(split.y.min()) and int(split.y.max()) < d.num_classes
    assert torch.equal(d.val.x, again.val.x) and torch.equal(d.train.y, again.train.y)
    with pytest.raises(DatasetError, match="nowhere"):
        load_dataset(name, str(tmp_path / "nowhere"), val_size=4)


# --- the registry itself --------------------------------------------------------------------------------------


def test_a_constructors_user_error_is_one_line_and_its_bug_keeps_its_traceback():
    things = Registry("thing")

    @things.register("fussy")
    class Fussy:
        def __init__(self, *, size: int = 1, rate: float = 0.5) -> None:
            if size < 1:
                raise OptionError(f"size must be >= 1, got {size}")
            self.size, self.rate = size, 1 / (rate - 0.5)  # rate 0.5 divides by zero: a bug

    built = things.build_checked("fussy", {"size": 2, "rate": 1}, "x.y")
    assert built.size == 2 and built.rate == 2.0  # the int 1 became the float 1.0
    with pytest.raises(OptionError, match=r"^x\.y: size must be >= 1, got 0$"):
        things.build_checked("fussy", {"size": 0, "rate": 1.0}, "x.y")
    with pytest.raises(OptionError, match=r"^x\.y\.size: expected int, got 'big'$"):
        things.build_checked("fussy", {"size": "big"}, "x.y")
    with pytest.raises(OptionError, match=r"^x\.y: thing 'fussy' has no option 'sise' \(did you mean 'size'\?\)"):
        things.build_checked("fussy", {"sise": 2}, "x.y")
    with pytest.raises(OptionError, match=r"^x\.y: unknown thing 'fusy'\. Did you mean 'fussy'\?"):
        things.build_checked("fusy", {}, "x.y")
    with pytest.raises(ZeroDivisionError) as bug:
        things.build_checked("fussy", {"rate": 0.5}, "x.y")
    assert not isinstance(bug.value, UserError) and bug.traceback[-1].name == "__init__"
