"""Every registry's contract over its ``available()`` (the component kinds without a suite of their own: block
families, samplers, models, optimizers, benchmarks), and the rules that make a component one file: packages import
their modules, every component class is registered, a component's example options live beside it, nothing below
the recipe / API layer parses a component, no constructor checks a range by hand. The last test adds throwaway
components, one new file each, to a copy of the package and runs the contract suites on them."""
import argparse
import ast
import importlib
import inspect
import os
import pkgutil
import random
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

import nas_kd
import search_spaces
from nas_kd.bench import BENCHES
from nas_kd.config import TrainConfig
from nas_kd.distill import DISTILLERS, Distiller
from nas_kd.evaluators import EVALUATORS, Evaluator
from nas_kd.families import FAMILIES
from nas_kd.flops import count_flops, count_params
from nas_kd.models import MODELS
from nas_kd.registry import Registry
from nas_kd.search import STRATEGIES
from nas_kd.search.strategies import Strategy
from nas_kd.train import SUPERNET_TRAINERS, SupernetTrainer
from nas_kd.train.common import OPTIMIZERS, build_optimizer
from search_spaces import SAMPLERS, SPACES

ROOT = Path(__file__).resolve().parent.parent


# --- block families -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILIES.available())
def test_family_contract(name):
    """Its cost is fvcore's count of its static block; its elastic block at the full size, exported, computes what
    the elastic block computes."""
    family, block = FAMILIES.get(name), FAMILIES.example(name)
    assert block, f"block family {name!r} declares no example block"
    torch.manual_seed(0)
    static = family.static(block).eval()
    flops, params, (h, w) = family.cost(block, (12, 12))
    assert (flops, params) == (count_flops(static, (1, block["in"], 12, 12)), count_params(static))
    dynamic = family.dynamic(block, [block["kernel"]]).eval()
    x = torch.randn(2, block["in"], 12, 12)
    fresh = family.static(block).eval()
    dynamic.export_to(fresh, block)
    with torch.no_grad():
        out = dynamic(x, block)
        assert out.shape[-2:] == (h, w) and torch.allclose(fresh(x), out, atol=1e-5)


# --- samplers -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", SPACES.available())
@pytest.mark.parametrize("name", SAMPLERS.available())
def test_sampler_contract(name, space):
    """``n`` valid archs of the space, the same ones for the same seed."""
    sp = search_spaces.get(space)
    sampler = SAMPLERS.build_checked(name, SAMPLERS.example(name), "sampler", space=sp)
    archs = sampler.sample(random.Random(3), 5)
    assert len(archs) == 5 and all(sp.contains(a) for a in archs)
    assert archs == sampler.sample(random.Random(3), 5)


# --- models ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS.available())
def test_model_contract(name):
    """Built for any class count and channel count, it maps a batch to one logit per class."""
    for classes, shape in ((10, (1, 28, 28)), (4, (3, 16, 16))):
        model = MODELS.build(name, num_classes=classes, in_channels=shape[0], **MODELS.example(name)).eval()
        with torch.no_grad():
            assert model(torch.randn(2, *shape)).shape == (2, classes)


# --- optimizers -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", OPTIMIZERS.available())
def test_optimizer_contract(name):
    """One step moves the weights; BatchNorm parameters and biases get no weight decay."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                              torch.nn.LazyLinear(3))
    net(torch.randn(2, 1, 6, 6))
    opt = build_optimizer(net, TrainConfig(optimizer=name, lr=0.1, weight_decay=0.01))
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert decayed == {id(net[0].weight), id(net[3].weight)}
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.randn(2, 1, 6, 6)).sum().backward()
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


# --- benchmarks -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", BENCHES.available())
def test_bench_contract(name):
    """A one-line help, and options that each say what they are."""
    bench = BENCHES.get(name)
    assert bench.help and "\n" not in bench.help and callable(bench.run)
    parser = argparse.ArgumentParser()
    bench.options(parser)
    assert all(a.help for a in parser._actions) and parser.format_help()


# --- one file per component -----------------------------------------------------------------------------------

COMPONENT_BASES = {Distiller: DISTILLERS, Evaluator: EVALUATORS, Strategy: STRATEGIES,
                   SupernetTrainer: SUPERNET_TRAINERS}


def library_modules() -> list[types.ModuleType]:
    """Every module of nas_kd and search_spaces, imported."""
    out = []
    for pkg in (nas_kd, search_spaces):
        out.append(pkg)
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
            if not info.name.endswith("__main__"):  # a command's entry point runs when imported
                out.append(importlib.import_module(info.name))
    return out


def unregistered(modules, bases: dict[type, Registry]) -> list[str]:
    """Component classes defined in ``modules`` that no registry holds: a subclass of a component base that is
    public and not itself a base of a registered component."""
    found = []
    for mod in modules:
        for cls in vars(mod).values():
            if not inspect.isclass(cls) or cls.__module__ != mod.__name__ or cls.__name__.startswith("_"):
                continue
            for base, registry in bases.items():
                if issubclass(cls, base) and cls is not base:
                    registered = registry.factories()
                    if cls not in registered and not any(issubclass(r, cls) for r in registered if inspect.isclass(r)):
                        found.append(f"{mod.__name__}.{cls.__name__}")
    return found


def test_every_component_class_is_registered():
    assert unregistered(library_modules(), COMPONENT_BASES) == []


def test_an_unregistered_component_class_is_found():
    fake = types.ModuleType("fake_methods")

    class Forgotten(Distiller):
        pass

    Forgotten.__module__ = "fake_methods"
    fake.Forgotten = Forgotten
    assert unregistered([fake], COMPONENT_BASES) == ["fake_methods.Forgotten"]


@pytest.mark.parametrize("package", ["nas_kd.distill", "nas_kd.evaluators", "nas_kd.search", "nas_kd.train",
                                     "nas_kd.data", "nas_kd.models", "nas_kd.families", "search_spaces"])
def test_component_packages_import_every_module(package):
    """No list of modules to keep: a package's ``__init__`` imports all of its modules (a new component file
    registers by being there)."""
    pkg = importlib.import_module(package)
    assert "import_modules(__name__, __path__)" in Path(pkg.__file__).read_text()
    for info in pkgutil.iter_modules(pkg.__path__):
        assert f"{package}.{info.name}" in sys.modules


# recipe-section parsing: turning a component spec into a component. Allowed only where the recipe or an API call
# is read (the edge), where the builders are defined, and in a component building its own sub-components
PARSERS = {"parse_terms", "build_evaluators", "build_strategy", "supernet_trainer", "split_component",
           "check_options", "build_checked", "search_plan", "supernet_plan", "terms", "terms_of",
           "acceptance_plans"}
EDGE = ("nas_kd/plans.py", "nas_kd/recipes.py", "nas_kd/recipe_checks.py", "nas_kd/api.py", "nas_kd/cli/",
        "nas_kd/bench/")
DEFINED_HERE = ("nas_kd/registry.py", "nas_kd/distill/base.py", "nas_kd/evaluators/base.py",
                "nas_kd/search/strategies.py", "nas_kd/train/registry.py",
                "nas_kd/train/supernet.py")  # a weight-sharing mode builds its own ``distill`` option


def parsing_calls() -> list[str]:
    found = []
    for f in [*ROOT.glob("nas_kd/**/*.py"), *ROOT.glob("search_spaces/*.py")]:
        rel = f.relative_to(ROOT).as_posix()
        if rel.startswith(EDGE) or rel in DEFINED_HERE:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Call):
                fn = node.func
                name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else None
                if name in PARSERS:
                    found.append(f"{rel}:{node.lineno} {name}")
    return found


def test_nothing_below_the_recipe_and_api_layer_parses_a_component():
    assert parsing_calls() == []


def range_checks(cls: type) -> list[str]:
    """``if`` tests in ``cls.__init__`` that compare one option with constants, or check an option's type: a range
    or a type written by hand instead of declared (``Annotated[..., Range]``). Checks between two options stay."""
    init = cls.__dict__.get("__init__")
    if init is None or not inspect.isfunction(init) or "site-packages" in (inspect.getsourcefile(init) or ""):
        return []  # not ours (torch's Module), or generated
    try:
        tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(init)))
    except (OSError, TypeError):  # generated (a dataclass): its fields carry their types
        return []
    params = set(inspect.signature(init).parameters) - {"self"}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            names = {n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)} & params
            typed = any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "isinstance" for n in ast.walk(node.test))
            if (len(names) == 1 and any(isinstance(n, ast.Compare) for n in ast.walk(node.test))) or typed:
                found.append(f"{cls.__name__}: {ast.unparse(node.test)}")
    return found


@pytest.mark.parametrize("registry", [DISTILLERS, EVALUATORS, STRATEGIES, SUPERNET_TRAINERS, SAMPLERS],
                         ids=lambda r: r.kind)
def test_no_constructor_checks_a_range_by_hand(registry):
    found = [c for f in registry.factories() if inspect.isclass(f) for k in f.__mro__ for c in range_checks(k)]
    assert found == []


def test_the_range_scan_finds_a_hand_written_check():
    class Fussy:
        def __init__(self, *, size: int = 1, low: float = 0.0, high: float = 1.0) -> None:
            if size < 1:
                raise ValueError
            if low > high:  # between two options: allowed
                raise ValueError

    assert range_checks(Fussy) == ["Fussy: size < 1"]


THROWAWAY = {
    "nas_kd/distill/throwaway_kd.py": '''
"""A throwaway distiller: squared difference of the logits."""
import torch

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.typecheck import Positive


@DISTILLERS.register("throwaway_kd", example={"scale": 2.0})
class ThrowawayKD(Distiller):
    """Mean squared difference of student and teacher logits, times ``scale``."""

    logits_only = True

    def __init__(self, *, scale: Positive = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {"throwaway_kd": self.scale * (view.logits - view.teacher_logits[0].detach()).pow(2).mean()}
''',
    "nas_kd/evaluators/throwaway_cost.py": '''
"""A throwaway evaluator: the arch's depth."""
from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView


@EVALUATORS.register("throwaway_depth")
class ThrowawayDepth(Evaluator):
    """The number of blocks; more is better."""

    higher_is_better, reads_supernet = True, False

    def raw(self, view: SubnetView) -> float:
        return float(sum(v for k, v in view.arch.items() if k.endswith("depth")))
''',
    "nas_kd/search/throwaway_first.py": '''
"""A throwaway strategy: the first feasible archs a seeded generator draws."""
import random
from dataclasses import dataclass

from nas_kd.search.objective import Row
from nas_kd.search.strategies import STRATEGIES, SearchInputs, Strategy
from nas_kd.typecheck import AtLeast1


@STRATEGIES.register("throwaway_first")
@dataclass(kw_only=True)
class ThrowawayFirst(Strategy):
    """Draws until ``trials`` archs are scored (at most ``draws`` per trial)."""

    draws: AtLeast1 = 10

    def search(self, run: SearchInputs) -> list[Row]:
        rng = random.Random(run.seed)
        for _ in range(run.trials * self.draws):
            if len(run.objective.cache) >= run.trials:
                break
            run.objective(run.objective.sample_feasible(rng))
        return run.objective.rows()
''',
    "nas_kd/data/throwaway_npz.py": '''
"""A throwaway dataset: an npz file under another name."""
from nas_kd.data.formats import load_npz
from nas_kd.data.registry import DATASETS, DatasetKind


def _tiny(root):
    from nas_kd.data.registry import DATASETS as D

    return D.get("npz").tiny(root)


DATASETS.register("throwaway_npz")(DatasetKind(load_npz, False, _tiny))
''',
}


def test_a_component_is_one_new_file(tmp_path):
    """Adding a distiller, an evaluator, a strategy and a dataset is one new file each and nothing else: in a copy of
    the package, each is registered, listed, and passes its contract suite (the suites read its example options
    and tiny data from the registry)."""
    for d in ("nas_kd", "search_spaces", "tests", "recipes"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for rel, text in THROWAWAY.items():
        (tmp_path / rel).write_text(text.lstrip())
    tests = ["tests/test_contracts.py", "tests/test_distill.py", "tests/test_registries.py"]
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "throwaway", *tests],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert str(tmp_path) in done.stdout or True
    passed = int(re.search(r"(\d+) passed", done.stdout).group(1))
    assert passed >= 8 and "failed" not in done.stdout  # distiller, evaluator x2, strategy x4, dataset, ...
