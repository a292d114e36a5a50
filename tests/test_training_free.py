"""Training-free evaluators on tiny cases whose answers are known, and through the evaluator registry."""
import math
import random

import pytest
import torch
import torch.nn as nn

import search_spaces
from nas_kd.data import load_dataset
from nas_kd.errors import OptionError
from nas_kd.evaluators import EvalContext, build_evaluators, score_archs
from nas_kd.evaluators.training_free import (
    cam_at,
    diswot_distance,
    naswot_score,
    random_subnet,
    synflow_score,
)
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.supernet import Supernet


def test_diswot_is_maximal_for_a_student_identical_to_the_teacher():
    torch.manual_seed(0)
    teacher = ResNetTeacher(widths=(8, 8, 8, 8)).eval()
    other = ResNetTeacher(widths=(8, 8, 8, 8)).eval()
    x = torch.randn(16, 1, 28, 28)
    classes = teacher(x).argmax(1)
    t_map, t_feat = cam_at(teacher, "stage4", x, classes)
    s_map, s_feat = cam_at(other, "stage4", x, classes)
    assert diswot_distance(t_map, t_feat, t_map.clone(), t_feat.clone()) == pytest.approx(0.0, abs=1e-12)
    assert diswot_distance(t_map, t_feat, s_map, s_feat) > 1e-3


def test_grad_cam_matches_its_definition_and_leaves_the_model_alone():
    torch.manual_seed(0)
    net = ResNetTeacher(widths=(8, 8, 8, 8)).eval()
    x, classes = torch.randn(6, 1, 28, 28), torch.randint(0, 10, (6,))
    with torch.no_grad():
        a = net.stage3(net.stage2(net.stage1(net.stem(x))))
        a = net.stage4(a)
        cam, pooled = cam_at(net, "stage4", x, classes)
        assert not torch.is_grad_enabled()  # the caller's grad mode survives
    assert all(p.grad is None for p in net.parameters())  # dy/dA only: no weight gradients
    a.requires_grad_()
    (grad,) = torch.autograd.grad(net.head(a).gather(1, classes[:, None]).sum(), a)
    assert torch.allclose(cam, torch.relu((grad.mean((2, 3), keepdim=True) * a).sum(1)).detach(), atol=1e-6)
    assert torch.allclose(pooled, a.detach().mean((2, 3)))
    assert cam.shape == (6, *a.shape[-2:]) and (cam > 0).any()


def test_naswot_falls_when_inputs_cannot_be_told_apart():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    x = torch.randn(8, 16)
    distinct = naswot_score(net, x)
    assert math.isfinite(distinct)
    assert naswot_score(net, torch.cat([x[:4], x[:4]])) < distinct  # repeated images: a singular kernel


def test_synflow_of_a_linear_map_is_the_sum_of_its_absolute_weights():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    expected = math.log(net[1].weight.double().abs().sum().item())
    assert synflow_score(net, (1, 2, 2)) == pytest.approx(expected, rel=1e-9)
    assert net[1].weight.grad is None and (net[1].weight < 0).any()  # the caller's net is untouched


def test_training_free_evaluators_through_the_registry(synthetic_root):
    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    space = search_spaces.get("resnet")
    net = Supernet(space)
    ctx = EvalContext.build(net, ResNetTeacher(widths=(8, 8, 8, 8)), data, teacher_stages=["stem", "stage1", "stage2",
                            "stage3", "stage4"], probe_size=32, bn_batches=1, batch_size=64, seed=0, channels_last=False)
    archs = [space.sample(random.Random(i)) for i in range(3)]
    evaluators = build_evaluators(["diswot", "naswot", "synflow"], "test")
    rows = score_archs(ctx, archs, evaluators)
    again = score_archs(ctx, archs, evaluators)
    assert all(math.isfinite(r[n]) for r in rows for n in ("diswot", "naswot", "synflow"))
    assert [r["synflow"] for r in rows] == [r["synflow"] for r in again]  # a function of the arch
    # DisWOT of the arch whose own untrained net is the teacher: identical maps and relations, the best score (0)
    twin = random_subnet(ctx, archs[0]).eval()
    own = EvalContext.build(net, twin, data, teacher_stages=["stem", *twin.stage_names], probe_size=32, bn_batches=1,
                            batch_size=64, seed=0, channels_last=False)
    (same, other) = score_archs(own, archs[:2], build_evaluators(["diswot"], "test"))
    assert same["diswot"] == pytest.approx(0.0, abs=1e-9) and other["diswot"] < -1e-6


def test_the_training_free_batch_is_an_option_of_each_evaluator(synthetic_root):
    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    space = search_spaces.get("resnet")
    ctx = EvalContext.build(Supernet(space), ResNetTeacher(widths=(8, 8, 8, 8)), data,
                            teacher_stages=["stem", "stage1", "stage2", "stage3", "stage4"], probe_size=32,
                            bn_batches=1, batch_size=64, seed=0, channels_last=False)
    arch = space.sample(random.Random(0))
    (row,) = score_archs(ctx, [arch], build_evaluators(["naswot", {"name": "naswot", "batch": 8}], "test"))
    x = ctx.probe[:8]
    assert row["naswot[batch=8]"] == naswot_score(random_subnet(ctx, arch).eval(), x) != row["naswot"]
    with pytest.raises(OptionError, match=r"test\[1\]\.batch: must be >= 2, got 1"):
        build_evaluators(["kl", {"name": "naswot", "batch": 1}], "test")
