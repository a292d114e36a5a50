"""The Python API (issue 27): the examples end to end on tiny synthetic data with a teacher defined here (not
importable by name), the same pipeline figures as the command line, the same one-line errors, no whole recipe
below the recipe layer, TensorBoard scalars."""
import ast
import importlib.util
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import nas_kd
from nas_kd.cli import main
from nas_kd.flops import count_flops

STAGES = ["stem", "b1", "b2", "b3"]


class TinyTeacher(nn.Module):
    """A teacher the library cannot import by name: it exists only in this test."""

    def __init__(self, num_classes: int = 3, width: int = 24) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.b2 = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))

    def forward(self, x):
        return self.head(self.b3(self.b2(self.b1(self.stem(x)))))


def tensors(n=160, seed=0):
    """Images whose class is a bright quadrant, so that even a tiny model learns something."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = 0.3 * torch.rand(n, 1, 12, 12, generator=g)
    for i, c in enumerate(y.tolist()):
        x[i, 0, (c // 2) * 6:(c // 2) * 6 + 6, (c % 2) * 6:(c % 2) * 6 + 6] += 0.7
    return x, y


def example(name):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent.parent / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 80) -> nn.Module:
    """``model`` trained on (x, y) with Adam (full batch), returned in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def teacher():
    """A trained TinyTeacher, on the inputs nas_kd.make_data gives (the data's normalisation)."""
    torch.manual_seed(0)
    data = nas_kd.make_data(tensors(), val_fraction=0.1)
    return fit(TinyTeacher(), data.train.x, data.train.y)


class ThreeBlocks(nn.Module):
    """A user's teacher with three blocks under ``features``: fewer stages than the space has."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()),
            nn.Sequential(nn.Conv2d(width, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU()))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 3))

    def forward(self, x):
        return self.head(self.features(x))


TINY_RUN = dict(epochs=1, trials=2, finetune_epochs=1, budget_mflops=1.0, space="resnet",
                strategy={"name": "evolution", "population": 2}, batching={"batch_size": 32},
                supernet={"bn_batches": 1, "eval_random_archs": 0}, search={"probe_size": 8, "bn_batches": 1})


def test_a_three_block_teacher_runs_end_to_end_with_kl(tmp_path):
    """Nothing pairs stages when the search scores by kl and the student learns by kd: a teacher with fewer
    stages than the space (or none named) is enough."""
    torch.manual_seed(0)
    data = nas_kd.make_data(tensors(), val_fraction=0.2)
    module = fit(ThreeBlocks(), data.train.x, data.train.y)
    stages = ["features.0", "features.1", "features.2"]
    result = nas_kd.run(module, data, teacher_stages=stages, evaluator="kl", terms=["kd"], out=tmp_path / "r",
                        **TINY_RUN)
    assert 0 <= result.metrics["student_test_acc"] <= 1 and result.metrics["teacher_val_acc"] > 0.5
    assert (tmp_path / "r" / "student" / "weights.pt").exists()
    with pytest.raises(nas_kd.UserError, match=r"evaluator rdm compares 4 teacher stage\(s\).*names 3 .*pairing: best"):
        nas_kd.run(module, data, teacher_stages=stages, evaluator="rdm", out=tmp_path / "never", **TINY_RUN)
    assert not (tmp_path / "never").exists()


def test_a_teacher_of_unnormalised_images_keeps_its_accuracy_given_its_preprocessing(tmp_path):
    """A teacher trained on [0, 1] images: said so (preprocess none), it sees its own inputs inside nas_kd.run
    and scores there what it scores on its own; not said, the run stops before any training, in one line that
    names the cause and the option."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (300,), generator=g)  # the class is the brightness: what a normalisation moves
    x = ((0.6 + 0.02 * y.float()).view(-1, 1, 1, 1) + 0.003 * torch.randn(300, 1, 12, 12, generator=g)).clamp(0, 1)
    data = nas_kd.make_data((x[:240], y[:240]), (x[240:], y[240:]), val_fraction=0.2)
    torch.manual_seed(0)
    module = fit(nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 10)), x[:240], y[:240], steps=300)
    with torch.no_grad():  # trained on the raw [0, 1] images, as its user did
        own = (module(x[240:]).argmax(1) == y[240:]).float().mean().item()
    assert own > 0.9
    given = nas_kd.Teacher.of(module, preprocess="none")
    result = nas_kd.run(given, data, evaluator="kl", out=tmp_path / "r", **TINY_RUN)
    assert result.metrics["teacher_test_acc"] == pytest.approx(own)
    with torch.no_grad():  # the user's module itself is left as it was
        assert (module(x[200:]).argmax(1) == y[200:]).float().mean().item() == own
    with pytest.raises(nas_kd.UserError) as err:
        nas_kd.run(module, data, evaluator="kl", out=tmp_path / "never", **TINY_RUN)
    said = str(err.value)
    assert "\n" not in said and "near chance" in said and "teacher.preprocess" in said and "preprocess=" in said
    assert not (tmp_path / "never" / "supernet").exists()


def test_search_example_finds_a_student_under_the_budget(teacher, tmp_path):
    x, y = tensors()
    result = example("search_student").main(teacher, STAGES, x, y, budget_fraction=0.5, epochs=1, trials=3,
                                            finetune_epochs=1, batch_size=32, out=str(tmp_path / "run"))
    budget = 0.5 * count_flops(teacher, (1, 1, 12, 12))
    assert count_flops(result.student, (1, 1, 12, 12)) <= budget
    assert 0 <= result.metrics["student_test_acc"] <= 1 and result.metrics["student_mflops"] * 1e6 <= budget
    assert 1 <= len(result.candidates) <= 3 and result.arch == result.candidates[0]["arch"]
    assert (tmp_path / "run" / "pipeline.json").exists()  # the command line's run directory
    config = (tmp_path / "run" / "supernet" / "config.yaml").read_text()
    assert "fingerprint" in config and "api: run" in config  # the call, not a recipe, defines the run


def test_distill_example_trains_two_copies_of_my_student(teacher, tmp_path):
    mod = example("distill_two_methods")
    data = nas_kd.make_data(tensors(), tensors(64, seed=1))
    torch.manual_seed(0)
    student = mod.small_cnn(3, width=4)
    before = [p.clone() for p in student.parameters()]
    results = mod.main(student, teacher, data, epochs=1, out=str(tmp_path))
    assert set(results) == {"kd", "alpha_div"}
    for r in results.values():
        assert 0 <= r.metrics["test_acc"] <= 1 and r.metrics["distill"][0]["name"] in results
        assert r.metrics["mflops"] * 1e6 == pytest.approx(count_flops(r.student, (1, 1, 12, 12)))
    assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))  # each trained a copy


def test_own_loop_example_exports_the_arch_it_trained(tmp_path):
    data = nas_kd.make_data(tensors(), val_fraction=0.2)
    student, acc = example("supernet_own_loop").main(data, epochs=1, batch_size=32, out=str(tmp_path))
    space = nas_kd.search_space("resnet", (1, 12, 12), 3)
    assert count_flops(student, (1, 1, 12, 12)) == pytest.approx(space.flops(space.min_arch()))
    assert 0 <= acc <= 1 and (tmp_path / "arch.json").exists()


def test_the_stages_one_by_one(teacher, tmp_path):
    """train_supernet -> search_supernet -> export_subnet -> distill_student, as the commands chain them."""
    data = nas_kd.make_data(tensors(96), val_fraction=0.25)
    small = {"batch_size": 16}
    sup = nas_kd.train_supernet(None, data, epochs=1, out=tmp_path / "s", batching=small, show_progress=False,
                                supernet={"bn_batches": 1, "eval_random_archs": 0})
    assert sup.checkpoint.exists() and 0 <= sup.metrics["max_acc"] <= 1 and sup.supernet.space.name == "resnet"
    found = nas_kd.search_supernet(sup, teacher, data, teacher_stages=STAGES, budget_fraction=0.5, trials=3,
                                   strategy="random", out=tmp_path / "q", batching=small, show_progress=False,
                                   search={"probe_size": 8, "bn_batches": 1})
    budget = 0.5 * count_flops(teacher, (1, 1, 12, 12))
    assert found.metrics["scored"] == len(found.candidates) == 3
    assert all(c["mflops"] * 1e6 <= budget for c in found.candidates) and found.arch == found.candidates[0]["arch"]
    student = nas_kd.export_subnet(sup, found.arch, data=data, recalibrate_batches=1, batching=small,
                                   out=tmp_path / "e")
    assert count_flops(student, (1, 1, 12, 12)) <= budget and (tmp_path / "e" / "weights.pt").exists()
    tuned = nas_kd.distill_student(student, teacher, data, epochs=1, out=tmp_path / "d", batching=small,
                                   show_progress=False)
    assert tuned.student is student and 0 <= tuned.metrics["test_acc"] <= 1
    with pytest.raises(nas_kd.UserError, match=r"holds a run of another recipe \(train.lr: 0.1 -> 0.05\)"):
        nas_kd.distill_student(student, teacher, data, epochs=1, out=tmp_path / "d", batching=small,
                               show_progress=False, train={"lr": 0.05})


def test_make_data_reads_datasets_arrays_and_refuses_bad_labels():
    x, y = tensors(40)
    ds = torch.utils.data.TensorDataset((x * 255).to(torch.uint8), y)
    a = nas_kd.make_data(ds, val_fraction=0.25)
    b = nas_kd.make_data(((x * 255).to(torch.uint8).numpy()[:, 0], y.numpy()), val_fraction=0.25)  # N x H x W
    assert a.input_shape == b.input_shape == (1, 12, 12) and a.num_classes == 3
    assert torch.allclose(a.train.x, b.train.x) and len(a.val) == 10 and torch.equal(a.test.y, a.val.y)
    with pytest.raises(nas_kd.UserError, match="labels must be 40 integers"):
        nas_kd.make_data((x, y.float()))


def test_cli_and_api_give_the_same_pipeline_figures(tmp_path, synthetic_root, teacher_ckpt):
    from nas_kd.config import TeacherConfig, load_recipe
    from nas_kd.data import load_data
    from nas_kd.teacher import load_teacher
    from conftest import TEACHER_KW

    sets = [f"data.root={synthetic_root}", "data.limit_train=128", "data.val_size=64", "data.limit_test=64",
            "data.batch_size=32", "train.epochs=1", "supernet.bn_batches=2", "search.trials=2", "search.probe_size=16",
            "search.bn_batches=2", "search.strategy={name: evolution, population: 2}", "pipeline.finetune_epochs=1",
            "pipeline.supernet_checkpoint=null", "pipeline.budget_fraction_of_teacher=null", "search.budget_mflops=3.0",
            f"teacher.checkpoint={teacher_ckpt}",
            f"teacher.kwargs={json.dumps(TEACHER_KW)}", "search.evaluator=kl", f"run.out_dir={tmp_path}", "run.name=cli",
            "pipeline.teacher_check=false"]  # a random teacher: the same figures are the point
    assert main(["run", "--recipe", "recipes/quickstart.yaml", *sum([["--set", s] for s in sets], [])]) == 0
    cli = json.loads((tmp_path / "cli" / "pipeline.json").read_text())

    r = load_recipe("recipes/quickstart.yaml", sets)
    data = load_data(r.data)
    module = load_teacher(TeacherConfig(model="resnet_fmnist", kwargs=TEACHER_KW, checkpoint=teacher_ckpt),
                          data.num_classes, data.in_channels)

    def section(cfg, *drop):
        return {k: v for k, v in vars(cfg).items() if k not in drop}

    api = nas_kd.run(module, data, teacher_stages=r.teacher.stages, budget_mflops=r.search.budget_mflops,
                     space=r.supernet.space, mode=r.supernet.mode, epochs=r.train.epochs, evaluator="kl",
                     strategy=r.search.strategy, trials=r.search.trials, terms=r.distill, ce_weight=r.student.ce_weight,
                     finetune_epochs=1, seed=r.seed, out=tmp_path / "api",
                     supernet=section(r.supernet, "space", "mode"),
                     search=section(r.search, "checkpoint", "evaluator", "strategy", "trials", "budget_mflops",
                                    "budget_ms", "latency_table"),
                     pipeline=section(r.pipeline, "supernet_checkpoint", "finetune_epochs"),
                     train=section(r.train, "epochs"), batching={k: getattr(r.data, k) for k in
                                                                 ("batch_size", "eval_batch_size", "augment_pad", "flip")})
    figures = ["student_test_acc", "student_mflops", "student_params", "teacher_test_acc", "teacher_mflops"]
    assert {k: api.metrics[k] for k in figures} == {k: cli[k] for k in figures}
    assert api.metrics["supernet"]["max_acc"] == cli["supernet"]["max_acc"]
    assert api.metrics["search"]["scored"] == cli["search"]["scored"]
    assert api.arch == json.loads((tmp_path / "cli" / "student" / "arch.json").read_text())["arch"]


def test_bad_arguments_raise_the_command_lines_one_line_error_before_any_work(tmp_path, capsys, synthetic_root,
                                                                              teacher_ckpt):
    from nas_kd.config import TeacherConfig
    from nas_kd.teacher import load_teacher
    from conftest import TEACHER_KW

    data = nas_kd.load_dataset("fashion-mnist", synthetic_root, val_size=64)
    teacher = load_teacher(TeacherConfig(model="resnet_fmnist", kwargs=TEACHER_KW, checkpoint=teacher_ckpt), 10, 1)
    stages = ["stem", "stage1", "stage2", "stage3", "stage4"]
    out = tmp_path / "never"
    cases = {  # the recipe's way (--set) and the call's way of the same mistake
        "search.evaluator=klx": dict(teacher_stages=stages, evaluator="klx"),
        "search.budget_mflops=0.001": dict(teacher_stages=stages, budget_mflops=0.001),
        "teacher.stages=[stem, block1]": dict(teacher_stages=["stem", "block1"]),
    }
    base = ["run", "--recipe", "recipes/quickstart.yaml"]
    for s in (f"data.root={synthetic_root}", "data.val_size=64", f"run.out_dir={tmp_path}",
              "pipeline.supernet_checkpoint=null", "pipeline.budget_fraction_of_teacher=null", "search.budget_mflops=3.0",
            f"teacher.checkpoint={teacher_ckpt}",
              f"teacher.kwargs={json.dumps(TEACHER_KW)}"):
        base += ["--set", s]
    for setting, kwargs in cases.items():
        with pytest.raises(nas_kd.UserError) as err:
            nas_kd.run(teacher, data, epochs=1, out=out, **kwargs)
        assert "\n" not in str(err.value)
        assert main([*base, "--set", setting]) == 2
        shown = capsys.readouterr().err.strip()
        assert shown.startswith("nas-kd run: error: ") and shown.endswith(str(err.value)), (shown, str(err.value))
    assert not out.exists() and not (tmp_path / "quickstart").exists()  # nothing was written, nothing trained
    with pytest.raises(nas_kd.UserError, match=r"train: unknown key 'lrr' \(did you mean 'lr'\?\)"):
        nas_kd.distill_student(nn.Linear(1, 1), teacher, data, train={"lrr": 0.1}, out=out)
    with pytest.raises(nas_kd.UserError, match=r"terms\[0\] \(kd\): .*'temprature'"):
        nas_kd.distill_student(nn.Linear(1, 1), teacher, data, terms=[{"name": "kd", "temprature": 2}], out=out)
    assert not out.exists()


def test_tensorboard_logging_writes_the_scalars(teacher, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = nas_kd.make_data(tensors(64), val_fraction=0.25)
    nas_kd.distill_student(nn.Sequential(nn.Flatten(), nn.Linear(144, 3)), teacher, data, epochs=2, out=tmp_path,
                   tensorboard=True, show_progress=False, batching={"batch_size": 16})
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train_loss", "val_acc"} <= set(tags)
    assert [e.step for e in events.Scalars("val_acc")] == [0, 1]


RECIPE_LAYER = ("nas_kd.cli", "nas_kd.config", "nas_kd.recipe_checks", "nas_kd.recipes",
                "nas_kd.bench.table")  # bench tables are rows of recipes (a file each) with overrides


def test_no_function_below_the_recipe_layer_takes_the_whole_recipe():
    """Outside the command line and the recipe-loading modules, no parameter is a ``Recipe`` (by annotation or by
    the name ``recipe``)."""
    root = Path(nas_kd.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith(RECIPE_LAYER):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                    note = ast.unparse(arg.annotation) if arg.annotation is not None else ""
                    if arg.arg == "recipe" or "Recipe" in note:
                        found.append(f"{module}:{getattr(node, 'name', 'lambda')}({arg.arg}: {note})")
    assert found == []


def test_the_api_docstring_examples_run():
    import doctest

    import nas_kd.api

    result = doctest.testmod(nas_kd.api, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
