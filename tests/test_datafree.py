"""Data-free distillation: every synthesis method on a tiny BatchNorm teacher (synthetic images), resumable, written
as a dataset that data.synthetic trains on; what a method needs (BatchNorm, a student) is refused before any work."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.data import load_data
from nas_kd.datafree import synthesize
from nas_kd.errors import UserError
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.synthesis import SYNTHESIZERS
from nas_kd.synthesis.deepinversion import DeepInversion

TINY = {"widths": [4, 4, 8, 8]}


class Killed(Exception):
    pass


def teacher():
    """A tiny teacher whose BatchNorm layers hold the statistics of images drawn from N(0.5, 0.3^2)."""
    torch.manual_seed(0)
    t = ResNetTeacher(**TINY).train()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for _ in range(30):
            t(0.5 + 0.3 * torch.randn(32, 1, 28, 28, generator=g))
    return t.eval()


def test_inversion_lowers_the_bn_statistics_loss():
    t = teacher()
    targets = torch.arange(8) % 10
    x, history = DeepInversion(iterations=30, lr=0.1).invert(t, targets, (1, 28, 28), torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28) and history[-1] < 0.3 * history[0]
    assert abs(x.mean().item() - 0.5) < 0.1  # the inputs moved from N(0, 1) noise towards what the teacher saw


def test_the_multi_resolution_warm_up_shows_the_teacher_pooled_inputs_then_full_ones_on_a_cosine_schedule():
    t = teacher()
    seen = []
    hook = t.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape[2:])))
    method = DeepInversion(iterations=30, lr=0.1, low_res=2 / 3, schedule="cosine")
    assert method.phases() == [(2, 20), (1, 10)]
    x, history = method.invert(t, torch.arange(8) % 10, (1, 28, 28), torch.Generator().manual_seed(0))
    hook.remove()
    assert seen == [(14, 14)] * 20 + [(28, 28)] * 10 and x.shape == (8, 1, 28, 28) and len(history) == 30
    lrs = [method.lr_at(i, 20) for i in range(20)]  # a linear warm-up of a quarter of the phase, then cosine to ~0
    assert lrs[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1]) and lrs[-1] < 0.002
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:]))
    assert DeepInversion(lr=0.1).lr_at(7, 20) == 0.1 and DeepInversion(iterations=9).phases() == [(1, 9)]


def test_a_warm_up_at_half_resolution_is_refused_for_a_teacher_that_cannot_take_it(tmp_path):
    fixed = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
    with pytest.raises(UserError, match="does not take half-resolution inputs"):
        synthesize(fixed, num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1), std=torch.ones(1),
                   out=tmp_path / "x", num_images=4, batch_size=4, method=DeepInversion(iterations=3, low_res=0.5),
                   show_progress=False)
    assert not (tmp_path / "x").exists()


def test_synthesize_resumes_by_batch_and_writes_a_dataset_data_synthetic_reads(tmp_path, synthetic_root, monkeypatch):
    from nas_kd import datafree

    t = teacher()
    recipe = load_recipe("recipes/distill_fmnist.yaml", [f"data.root={synthetic_root}", "data.val_size=16",
                                                          "data.limit_train=null"])
    data = load_data(recipe.data)
    kwargs = dict(num_classes=10, shape=(1, 28, 28), mean=data.mean, std=data.std, out=tmp_path / "syn", num_images=20,
                  batch_size=8, method=DeepInversion(iterations=3), show_progress=False)
    calls, killed = [], []
    real = DeepInversion.make

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2 and not killed:
            killed.append(1)
            raise Killed  # killed during the second batch
        return real(*a, **k)

    monkeypatch.setattr(DeepInversion, "make", flaky)
    with pytest.raises(Killed):
        synthesize(t, **kwargs)
    assert sorted(p.name for p in (tmp_path / "syn/batches").iterdir()) == ["batch00000.pt"]
    calls.clear()
    record = synthesize(t, **kwargs)
    assert len(calls) == 2  # batches 1 and 2 only: batch 0 was kept
    with np.load(tmp_path / "syn/synthetic.npz") as z:
        assert z["x"].shape == (20, 1, 28, 28) and z["x"].dtype == np.float32
        assert np.bincount(z["y"], minlength=10).tolist() == [2] * 10  # class-balanced
    assert record["num_images"] == 20 and record["seconds_per_1000_images"] > 0 and "command" in record
    bundle = load_data(load_recipe("recipes/distill_fmnist.yaml", [
        f"data.root={synthetic_root}", "data.val_size=16", "data.limit_train=null",
        f"data.synthetic={tmp_path / 'syn/synthetic.npz'}"]).data)
    assert len(bundle.train) + len(bundle.val) == 20 and len(bundle.test) == len(data.test)  # the real test split
    with pytest.raises(UserError, match="another normalisation|was made under normalisation"):
        load_data(load_recipe("recipes/distill_fmnist.yaml", [
            f"data.root={synthetic_root}", "data.val_size=16", "data.limit_train=8",
            f"data.synthetic={tmp_path / 'syn/synthetic.npz'}"]).data)


def test_a_teacher_without_batchnorm_is_refused_before_any_work(tmp_path, capsys):
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    with pytest.raises(UserError, match="no BatchNorm layers"):
        synthesize(plain, num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1), std=torch.ones(1),
                   out=tmp_path / "x", num_images=4, batch_size=4, method=DeepInversion(iterations=1),
                   show_progress=False)
    with pytest.raises(UserError, match="--method generator trains a student"):
        synthesize(teacher(), num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1), std=torch.ones(1),
                   out=tmp_path / "x", num_images=4, batch_size=4, method=SYNTHESIZERS.build("generator", steps=1),
                   show_progress=False)
    assert not (tmp_path / "x").exists()


def test_synthesize_command(tmp_path, synthetic_root, capsys):
    from nas_kd.checkpoint import save_checkpoint

    save_checkpoint({"model": teacher().state_dict()}, tmp_path / "t.pt")
    assert main(["synthesize", "--recipe", "recipes/distill_fmnist.yaml", "--set", f"data.root={synthetic_root}",
                 "--set", "data.val_size=16", "--set", f"teacher.checkpoint={tmp_path / 't.pt'}", "--set",
                 f"teacher.kwargs={json.dumps(TINY)}", "--out", str(tmp_path / "s"), "--num-images", "6",
                 "--batch-size", "6", "--method", "{name: deepinversion, iterations: 2}"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 6
    assert main(["synthesize", "--recipe", "recipes/distill_fmnist.yaml", "--set", f"data.root={synthetic_root}",
                 "--out", str(tmp_path / "u"), "--method", "{name: deepinversion, iterationz: 2}"]) == 2
    assert "iterationz" in capsys.readouterr().err and not (tmp_path / "u").exists()


def test_adaptive_inversion_competes_with_a_student():
    t = teacher()
    torch.manual_seed(1)
    student = ResNetTeacher(**TINY).eval()
    targets = torch.arange(8) % 10
    plain, _ = DeepInversion(iterations=5, competition_weight=10.0).invert(t, targets, (1, 28, 28),
                                                                          torch.Generator().manual_seed(0))
    adaptive, _ = DeepInversion(iterations=5, competition_weight=10.0).invert(t, targets, (1, 28, 28),
                                                                             torch.Generator().manual_seed(0), student)
    assert not torch.equal(plain, adaptive)  # the student's disagreement steers the inputs
    assert all(p.grad is None for p in student.parameters())  # and the student is not trained by it


def test_datafree_table_compares_synthetic_and_real_images(tmp_path, synthetic_root, capsys):
    """``nas-kd bench datafree``: the three rows on tiny data, with the synthesis' own record in the summary."""
    from nas_kd.checkpoint import save_checkpoint

    save_checkpoint({"model": teacher().state_dict()}, tmp_path / "t.pt")
    sets = [f"data.root={synthetic_root}", "data.val_size=16", f"teacher.checkpoint={tmp_path / 't.pt'}",
            f"teacher.kwargs={json.dumps(TINY)}"]
    sets.append("data.limit_train=20")  # the synthesis normalises as the table's rows do
    assert main(["synthesize", "--recipe", "recipes/distill_fmnist.yaml", *sum([["--set", s] for s in sets], []),
                 "--out", str(tmp_path / "s"), "--num-images", "20", "--batch-size", "10", "--method",
                 "{name: deepinversion, iterations: 2}"]) == 0
    kd = ["student.ce_weight=0.1", "distill=[{name: kd, weight: 0.9, temperature: 4}]"]
    table = tmp_path / "table.yaml"
    table.write_text(json.dumps({
        "recipe": "recipes/distill_fmnist.yaml", "seeds": [0, 1], "runs": str(tmp_path / "runs"),
        "out": str(tmp_path / "out"), "set": [*sets, "train.epochs=1", "data.batch_size=8"],
        "rows": {"synthetic_kd": [f"data.synthetic={tmp_path / 's' / 'synthetic.npz'}", *kd], "real_kd": kd,
                 "real_scratch": []}}))
    capsys.readouterr()
    assert main(["bench", "datafree", "--table", str(table)]) == 0
    summary = json.loads((tmp_path / "out.json").read_text())
    assert set(summary["rows"]) == {"synthetic_kd", "real_kd", "real_scratch"}
    # the images each row trained on: the synthetic row's last tenth validates
    assert {n: r["num_images"] for n, r in summary["rows"].items()} == {"synthetic_kd": 18, "real_kd": 20,
                                                                         "real_scratch": 20}
    assert {n: (len(r["seeds"]), r["train_images"]) for n, r in summary["rows"].items()} == {
        n: (2, r["num_images"]) for n, r in summary["rows"].items()}
    synthesis = summary["syntheses"]["synthetic_kd"]
    assert synthesis["seconds_per_1000_images"] > 0 and synthesis["num_images"] == 20
    assert synthesis["method"] == summary["rows"]["synthetic_kd"]["method"] == "deepinversion"
    page = (tmp_path / "out.md").read_text()
    diff = 100 * (summary["rows"]["synthetic_kd"]["acc_mean"] - summary["rows"]["real_kd"]["acc_mean"])
    row = next(line for line in page.splitlines() if line.startswith("| synthetic_kd |"))
    assert f"{diff:+.2f} (p " in row and summary["command"]


def test_data_impressions_follow_dirichlet_targets_from_the_teachers_class_similarities():
    from nas_kd.synthesis.impressions import Impressions, class_similarity

    t = teacher()
    sim = class_similarity(t, 10)
    assert torch.allclose(sim.diagonal(), torch.ones(10)) and sim.min() >= 0 and sim.max() <= 1
    method = Impressions(iterations=40, lr=0.05, betas=[1.0, 0.1])
    soft = method.soft_targets(sim, torch.tensor([3] * 400), torch.Generator().manual_seed(0))
    assert torch.allclose(soft.sum(1), torch.ones(400))
    # the mean draw follows its concentration (beta x the class's similarities, normalised)
    peaked = soft[0::2].mean(0)
    assert torch.allclose(peaked, sim[3].clamp_min(1e-3) / sim[3].clamp_min(1e-3).sum(), atol=0.05)
    task_targets = torch.arange(8) % 10
    from nas_kd.synthesis import Task

    task = Task(t, 10, (1, 28, 28), 8, 8, 0, None, None, lambda n: None)
    x, info = method.make(task, task_targets, torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28) and info["loss_last"] < info["loss_first"]
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))  # no BatchNorm: impressions need none
    assert not Impressions.needs_batchnorm and class_similarity(plain, 10).shape == (10, 10)


def test_the_generator_trains_against_a_student_resumes_exactly_and_replays_its_samples(tmp_path, monkeypatch):
    from nas_kd.synthesis import generator as gen_module

    t = teacher()

    def run(out, steps_before_kill=None):
        torch.manual_seed(5)
        student = ResNetTeacher(**TINY)
        method = SYNTHESIZERS.build("generator", steps=6, student_steps=1, batch_size=8, checkpoint_every=2)
        if steps_before_kill is not None:
            real, seen = gen_module.AdversarialGenerator.keep, []

            def dying(self, task, b, *a):
                real(self, task, b, *a)
                seen.append(b)
                if len(seen) == steps_before_kill:
                    raise Killed
            monkeypatch.setattr(gen_module.AdversarialGenerator, "keep", dying)
            with pytest.raises(Killed):
                synthesize(t, method=method, num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1),
                           std=torch.ones(1), out=out, num_images=12, batch_size=4, student=student, show_progress=False)
            monkeypatch.undo()
            torch.manual_seed(5)
            student = ResNetTeacher(**TINY)
        before = [p.detach().clone() for p in student.parameters()]
        record = synthesize(t, method=method, num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1),
                            std=torch.ones(1), out=out, num_images=12, batch_size=4, student=student,
                            show_progress=False)
        return record, before

    straight, before = run(tmp_path / "a")
    state = torch.load(tmp_path / "a" / gen_module.STATE_FILE, weights_only=True)
    assert state["step"] == 6 and any(not torch.equal(b, state["student"][k]) for b, k in
                                      zip(before, [k for k in state["student"] if "running" not in k and "num_batches" not in k]))
    assert straight["method"] == "generator" and "teacher_confidence_mean" in straight
    with np.load(tmp_path / "a" / "synthetic.npz") as z:
        assert z["x"].shape == (12, 1, 28, 28) and set(z["y"]) <= set(range(10))
        first = z["x"].copy()
    resumed, _ = run(tmp_path / "b", steps_before_kill=2)  # killed after the second kept batch, at step 3
    with np.load(tmp_path / "b" / "synthetic.npz") as z:
        assert np.allclose(z["x"], first, atol=1e-5)  # the resumed run made the same images


@pytest.mark.parametrize("name", SYNTHESIZERS.available())
def test_contract_every_method_writes_a_dataset_of_the_inputs_shape_and_is_done_when_rerun(name, tmp_path):
    t = teacher()
    method = SYNTHESIZERS.build(name, **SYNTHESIZERS.example(name))
    torch.manual_seed(0)
    student = ResNetTeacher(**TINY) if method.student else None
    kwargs = dict(method=method, num_classes=10, shape=(1, 28, 28), mean=torch.zeros(1), std=torch.ones(1),
                  out=tmp_path / name, num_images=6, batch_size=4, student=student, show_progress=False)
    record = synthesize(t, **kwargs)
    with np.load(tmp_path / name / "synthetic.npz") as z:
        x = z["x"]
        assert x.shape == (6, 1, 28, 28) and np.isfinite(x).all() and z["y"].min() >= 0 and z["y"].max() < 10
    assert record["method"] == name and record["settings"] == method.settings() and record["num_images"] == 6
    calls = []
    for attr in ("make", "keep"):
        if hasattr(type(method), attr):
            real = getattr(type(method), attr)
            setattr(method, attr, lambda *a, _real=real, **k: calls.append(1) or _real(method, *a, **k))
    again = synthesize(t, **kwargs)  # every batch is there: nothing is made again
    assert again["num_images"] == 6 and not calls
    with np.load(tmp_path / name / "synthetic.npz") as z:
        assert np.array_equal(z["x"], x)
