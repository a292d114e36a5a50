"""Hinton's specialists: clusters from the confusion matrix, the ensemble's combination, the command end to end."""
import json

import numpy as np
import torch

from nas_kd.cli import main
from nas_kd.config import TeacherConfig
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.models.specialist_ensemble import SpecialistEnsemble, collapse
from nas_kd.specialists import collapse_labels, confusion_clusters, confusion_matrix
from nas_kd.teacher import load_teacher

TINY = {"widths": [4, 4, 8, 8]}


def test_clusters_come_from_the_confusion_matrix():
    m = np.diag([100] * 10)
    for a, b, n in [(0, 6, 30), (2, 4, 25), (4, 6, 20), (0, 2, 15), (2, 6, 10), (7, 9, 12), (5, 7, 3)]:
        m[a, b] = n  # shirt / T-shirt / pullover / coat confused, like Fashion-MNIST's 0, 2, 4, 6
    assert confusion_clusters(m, 1, 4) == [[0, 2, 4, 6]]
    assert confusion_clusters(m, 2, 2) == [[0, 6], [2, 4]]
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [5.0, 0, 0]])
    assert confusion_matrix(logits, torch.tensor([0, 1, 1]), 3).tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert collapse_labels(torch.tensor([0, 2, 4, 9]), [2, 4]).tolist() == [2, 0, 1, 2]
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert torch.allclose(collapse(p, [1, 3]), torch.tensor([[0.2, 0.4, 0.4]]))


def test_the_ensemble_follows_the_generalist_unless_a_specialist_is_active():
    torch.manual_seed(0)
    x = torch.randn(16, 1, 28, 28)
    probe = SpecialistEnsemble(10, 1, generalist={"model": "resnet_fmnist", "kwargs": TINY}, clusters=[[0]]).eval()
    with torch.no_grad():
        top = set(probe.generalist(x).argmax(1).tolist())
    outside = [c for c in range(10) if c not in top][:3]  # a cluster the generalist never picks first
    torch.manual_seed(0)
    ens = SpecialistEnsemble(10, 1, generalist={"model": "resnet_fmnist", "kwargs": TINY}, clusters=[outside],
                             steps=40).eval()
    ens.generalist.load_state_dict(probe.generalist.state_dict())
    with torch.no_grad():
        p_g = torch.softmax(ens.generalist(x), 1)
        q = torch.softmax(ens(x), 1)
    assert torch.allclose(q, p_g, atol=1e-4)  # no specialist is active: nothing to reconcile
    both = SpecialistEnsemble(10, 1, generalist={"model": "resnet_fmnist", "kwargs": TINY}, clusters=[sorted(top)],
                              steps=40).eval()
    both.generalist.load_state_dict(probe.generalist.state_dict())
    with torch.no_grad():
        assert not torch.allclose(torch.softmax(both(x), 1), p_g, atol=1e-4)  # an active specialist moves q


def test_specialists_command_builds_a_teacher(tmp_path, synthetic_root, capsys):
    from nas_kd.checkpoint import save_checkpoint

    torch.manual_seed(0)
    save_checkpoint({"model": ResNetTeacher(**TINY).state_dict()}, tmp_path / "t.pt")
    sets = [f"data.root={synthetic_root}", "data.val_size=32", "data.limit_train=64", "data.limit_test=32",
            "data.batch_size=32", f"teacher.checkpoint={tmp_path / 't.pt'}", f"teacher.kwargs={json.dumps(TINY)}"]
    args = ["specialists", "--recipe", "recipes/distill_fmnist.yaml", "--out", str(tmp_path / "sp"), "--clusters", "2",
            "--cluster-size", "3", "--epochs", "1"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    record = json.loads((tmp_path / "sp/specialists.json").read_text())
    assert len(record["clusters"]) == 2 and all(len(c) == 3 for c in record["clusters"])
    assert not set(record["clusters"][0]) & set(record["clusters"][1])
    assert record["batches"] == "enriched" and all(r["train_images"] < 64 for r in record["specialists"])
    teacher = load_teacher(TeacherConfig(**record["teacher"]), 10, 1)  # the ensemble loads as a teacher
    assert teacher(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert 0 <= record["ensemble_test_acc"] <= 1


def test_enriched_set_is_every_special_image_and_as_many_others():
    from nas_kd.data import Split
    from nas_kd.specialists import enriched

    y = torch.arange(10).repeat(20)  # 20 images per class
    split = Split(torch.arange(200, dtype=torch.float32)[:, None], y)
    a, b = enriched(split, [2, 5], seed=0), enriched(split, [2, 5], seed=0)
    special = torch.isin(a.y, torch.tensor([2, 5]))
    assert special.sum() == 40 and (~special).sum() == 40  # all of its classes, as many from the rest
    assert torch.equal(a.x[:, 0].long(), torch.arange(200)[torch.isin(torch.arange(200), a.x[:, 0].long())])  # order
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, enriched(split, [2, 5], seed=1).x)  # seeded
    assert torch.equal(split.y[a.x[:, 0].long()], a.y)  # images keep their labels
