"""Data-free distillation: DeepInversion on a tiny BatchNorm teacher (synthetic images), resumable batch by batch,
written as a dataset that data.synthetic trains on; a teacher without BatchNorm is refused."""
import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.data import load_data
from nas_kd.datafree import InversionSettings, invert_batch, synthesize
from nas_kd.errors import UserError
from nas_kd.models.resnet_teacher import ResNetTeacher

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
    x, history = invert_batch(t, targets, (1, 28, 28), InversionSettings(iterations=30, lr=0.1),
                              torch.Generator().manual_seed(0))
    assert x.shape == (8, 1, 28, 28) and history[-1] < 0.3 * history[0]
    assert abs(x.mean().item() - 0.5) < 0.1  # the inputs moved from N(0, 1) noise towards what the teacher saw


def test_synthesize_resumes_by_batch_and_writes_a_dataset_data_synthetic_reads(tmp_path, synthetic_root, monkeypatch):
    from nas_kd import datafree

    t = teacher()
    recipe = load_recipe("recipes/distill_fmnist.yaml", [f"data.root={synthetic_root}", "data.val_size=16",
                                                          "data.limit_train=null"])
    data = load_data(recipe.data)
    kwargs = dict(num_classes=10, shape=(1, 28, 28), mean=data.mean, std=data.std, out=tmp_path / "syn", num_images=20,
                  batch_size=8, settings=InversionSettings(iterations=3), show_progress=False)
    calls, killed = [], []
    real = datafree.invert_batch

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2 and not killed:
            killed.append(1)
            raise Killed  # killed during the second batch
        return real(*a, **k)

    monkeypatch.setattr(datafree, "invert_batch", flaky)
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
                   out=tmp_path / "x", num_images=4, batch_size=4, settings=InversionSettings(iterations=1),
                   show_progress=False)
    assert not (tmp_path / "x").exists()


def test_synthesize_command(tmp_path, synthetic_root, capsys):
    from nas_kd.checkpoint import save_checkpoint

    save_checkpoint({"model": teacher().state_dict()}, tmp_path / "t.pt")
    assert main(["synthesize", "--recipe", "recipes/distill_fmnist.yaml", "--set", f"data.root={synthetic_root}",
                 "--set", "data.val_size=16", "--set", f"teacher.checkpoint={tmp_path / 't.pt'}", "--set",
                 f"teacher.kwargs={json.dumps(TINY)}", "--out", str(tmp_path / "s"), "--num-images", "6",
                 "--batch-size", "6", "--iterations", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["num_images"] == 6


def test_adaptive_inversion_competes_with_a_student():
    t = teacher()
    torch.manual_seed(1)
    student = ResNetTeacher(**TINY).eval()
    targets = torch.arange(8) % 10
    plain, _ = invert_batch(t, targets, (1, 28, 28), InversionSettings(iterations=5), torch.Generator().manual_seed(0))
    adaptive, _ = invert_batch(t, targets, (1, 28, 28), InversionSettings(iterations=5, competition_weight=10.0),
                               torch.Generator().manual_seed(0), student=student)
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
                 "--out", str(tmp_path / "s"), "--num-images", "20", "--batch-size", "10", "--iterations", "2"]) == 0
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
    assert summary["seconds_per_1000_images"] > 0 and summary["synthesis"]["num_images"] == 20
    assert summary["synthetic_minus_real_kd_points"] == pytest.approx(
        100 * (summary["rows"]["synthetic_kd"]["acc_mean"] - summary["rows"]["real_kd"]["acc_mean"]))
    assert "Synthetic minus real KD" in (tmp_path / "out.md").read_text() and summary["command"]
