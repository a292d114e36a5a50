import json
import subprocess
import sys

import pytest
import torch
import yaml

from nas_kd.checkpoint import CheckpointError
from nas_kd.cli import main
from nas_kd.config import TeacherConfig, load_recipe
from nas_kd.errors import UserError
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.errors import RunDirError
from nas_kd.teacher import build_model, load_teacher
from nas_kd.recipes import train_teacher

TINY = ["teacher.kwargs={widths: [8, 16, 16, 16]}", "data.batch_size=64", "train.lr=0.05"]


def tiny_recipe(tmp_path, fmnist_root, *extra):
    return load_recipe("recipes/teacher_fmnist.yaml", [
        *TINY, f"data.root={fmnist_root}", f"run.out_dir={tmp_path}", "data.limit_train=3000",
        "data.limit_test=1000", "train.checkpoint_every_steps=0", "run.name=run", *extra,
    ])


def test_teacher_learns_on_real_slice(tmp_path, fmnist_root):
    final = train_teacher(tiny_recipe(tmp_path, fmnist_root, "train.epochs=2"), show_progress=False)
    assert final["test_acc"] > 0.6  # chance is 0.1
    run = tmp_path / "run"
    assert {"config.yaml", "metrics.jsonl", "final.json", "model.pt", "checkpoints"} <= {p.name for p in run.iterdir()}
    assert final["command"] and final["git_commit"] and final["wall_seconds"] > 0
    teacher = load_teacher(TeacherConfig(kwargs={"widths": [8, 16, 16, 16]}, checkpoint=str(run / "model.pt")))
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())


class Interrupt(Exception):
    pass


def test_resume_mid_epoch_reproduces_uninterrupted_run(tmp_path, fmnist_root):
    args = ("train.epochs=2", "data.limit_train=640", "train.checkpoint_every_steps=3")
    straight = train_teacher(tiny_recipe(tmp_path / "a", fmnist_root, *args), show_progress=False)

    def stop(loop):
        if loop.state.epoch == 1 and loop.state.step == 4:
            raise Interrupt

    recipe = tiny_recipe(tmp_path / "b", fmnist_root, *args)
    with pytest.raises(Interrupt):
        train_teacher(recipe, on_step=stop, show_progress=False)
    other = tiny_recipe(tmp_path / "b", fmnist_root, *args, "train.lr=0.02")
    with pytest.raises(RunDirError, match=r"holds a run of another recipe \(train.lr: 0.05 -> 0.02\)"):
        train_teacher(other, show_progress=False)
    config = tmp_path / "b/run/config.yaml"  # a run started before pipeline.quantize existed is still this recipe's
    saved = yaml.safe_load(config.read_text())
    del saved["pipeline"]["quantize"]
    config.write_text(yaml.safe_dump(saved))
    resumed = train_teacher(recipe, show_progress=False)  # the same call again continues the killed run
    assert resumed["test_acc"] == straight["test_acc"] and resumed["test_loss"] == straight["test_loss"]
    wa = torch.load(tmp_path / "a/run/model.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "b/run/model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    records = [json.loads(line) for line in (tmp_path / "b/run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]


@pytest.mark.parametrize("resume", [False, True])
def test_a_failed_start_never_blocks_a_rerun(tmp_path, synthetic_root, resume):
    recipe = tiny_recipe(tmp_path, synthetic_root, "train.epochs=1", "data.val_size=64", "teacher.model=no.such:model")
    with pytest.raises(UserError, match="cannot import"):
        train_teacher(recipe, show_progress=False)
    assert not (tmp_path / "run").exists()  # the bad teacher was found before the run directory was made
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("left by a start killed before its first checkpoint\n")
    recipe = tiny_recipe(tmp_path, synthetic_root, "train.epochs=1", "data.val_size=64")
    first = train_teacher(recipe, resume=resume, show_progress=False)
    assert (tmp_path / "run" / "final.json").exists()
    with pytest.raises(RunDirError, match="holds a finished run"):  # now it holds work: never overwritten silently
        train_teacher(recipe, show_progress=False)
    assert train_teacher(recipe, resume=True, show_progress=False)["test_acc"] == first["test_acc"]  # asked: kept


def make_factory_module(tmp_path):
    (tmp_path / "my_models.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(num_classes=10, in_channels=1, hidden=4):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * 28 * 28, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))\n"
        "def broken(num_classes=10, in_channels=1):\n"
        "    return nn.Linear(in_channels, num_classes, bias='yes', dtype='a bug inside the factory')\n"
    )


def test_user_factory_and_torchscript_teachers(tmp_path, monkeypatch):
    make_factory_module(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_models

    model = my_models.tiny(hidden=4)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    t = load_teacher(TeacherConfig(model="my_models:tiny", kwargs={"hidden": 4}, checkpoint=str(tmp_path / "w.pt")))
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(t(x), model(x))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_teacher(TeacherConfig(model="my_models:tiny", kwargs={"hidden": 5}, checkpoint=str(tmp_path / "w.pt")))
    with pytest.raises(UserError, match="has no callable 'nope'"):
        load_teacher(TeacherConfig(model="my_models:nope", checkpoint=str(tmp_path / "w.pt")))
    # a call that does not fit the factory's signature is the user's error: one line
    with pytest.raises(UserError, match=r"teacher.model 'my_models:tiny' cannot be built with \['hiden', "):
        build_model(TeacherConfig(model="my_models:tiny", kwargs={"hiden": 4}), 10, 1)
    # an exception raised inside the factory is a bug there: it keeps its type and traceback
    with pytest.raises(TypeError) as bug:
        build_model(TeacherConfig(model="my_models:broken"), 10, 1)
    assert not isinstance(bug.value, UserError)
    assert any(str(entry.path).endswith("my_models.py") for entry in bug.traceback)
    torch.jit.trace(model, x).save(str(tmp_path / "m.ts"))
    ts = load_teacher(TeacherConfig(torchscript=str(tmp_path / "m.ts")))
    assert torch.allclose(ts(x), model(x))


def test_teacher_stage_names():
    names = dict(ResNetTeacher().named_children())
    assert list(names) == ["stem", "stage1", "stage2", "stage3", "stage4", "head"]


def test_cli_help_and_user_errors(tmp_path, capsys):
    out = subprocess.run([sys.executable, "-m", "nas_kd", "--help"], capture_output=True, text=True, check=True).stdout
    assert "train-teacher" in out
    (tmp_path / "bad.yaml").write_text("train:\n  epochz: 3\n")
    assert main(["train-teacher", "--recipe", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: train: unknown key 'epochz' (did you mean 'epochs'?)" in err
