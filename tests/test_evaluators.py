import pytest
import torch

import search_spaces
from nas_kd.config import load_recipe
from nas_kd.data import load_data
from nas_kd.evaluators import EVALUATORS, EvalContext, build_evaluators, score_archs
from nas_kd.evaluators.context import RecalibratedSubnet
from nas_kd.evaluators.similarity import (
    centred_gram,
    linear_cka,
    mean_kl,
    rdm,
    rdm_similarity,
    spearman,
)
from nas_kd.export import export_subnet
from nas_kd.losses.functional import kd_loss
from nas_kd.supernet import Supernet


def feats(seed=0, shape=(40, 6, 5, 5)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_identical_and_permuted_units_are_fully_similar():
    f = feats()
    perm = f[:, torch.randperm(6)]
    assert rdm_similarity(rdm(f), rdm(f)) == pytest.approx(1.0)
    assert rdm_similarity(rdm(f), rdm(perm)) == pytest.approx(1.0)
    assert linear_cka(centred_gram(f), centred_gram(perm)) == pytest.approx(1.0)
    assert linear_cka(centred_gram(f), centred_gram(3.0 * f)) == pytest.approx(1.0)
    logits = torch.randn(40, 10)
    assert mean_kl(logits, logits) == pytest.approx(0.0, abs=1e-12)
    assert mean_kl(logits, torch.zeros(40, 10)) > 0
    other = feats(1)
    assert rdm_similarity(rdm(f), rdm(other)) < 0.5
    assert linear_cka(centred_gram(f), centred_gram(other)) < 0.9


def test_rdm_is_one_minus_pearson_and_projection_keeps_it_close():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(30, 5, generator=g) @ torch.randn(5, 2000, generator=g) + 0.1 * torch.randn(30, 2000, generator=g)
    full = rdm(f)
    x = f - f.mean(1, keepdim=True)
    i, j = 3, 7
    r = (x[i] @ x[j]) / (x[i].norm() * x[j].norm())
    assert full[torch.triu_indices(30, 30, 1).T.tolist().index([i, j])].item() == pytest.approx(1 - r.item(), abs=1e-6)
    assert spearman(full, rdm(f, proj_dim=256)) > 0.9


def test_spearman_handles_ties_like_scipy():
    from scipy.stats import spearmanr

    a, b = torch.tensor([1.0, 2, 2, 3, 5, 5]), torch.tensor([2.0, 1, 3, 3, 4, 6])
    assert spearman(a, b) == pytest.approx(spearmanr(a.numpy(), b.numpy()).statistic)


def test_subnet_scored_against_its_own_export_is_identical(fmnist_root):
    recipe = load_recipe(None, [f"data.root={fmnist_root}", "data.limit_train=300", "data.val_size=100",
                                "data.limit_test=50"])
    data = load_data(recipe.data)
    space = search_spaces.get("resnet")
    net = Supernet(space)
    arch = space.sample(__import__("random").Random(0))
    ctx = EvalContext.build(net, export_subnet(net.eval(), arch), data, teacher_stages=["stem", *net.stage_names],
                            probe_size=50, bn_batches=2, batch_size=64, seed=0, channels_last=False)
    RecalibratedSubnet(ctx, arch)  # recalibrates the supernet for arch
    ctx.teacher = export_subnet(net.eval(), arch).eval()
    (row,) = score_archs(ctx, [arch], build_evaluators(["kl", "rdm", "cka", "flops"], "test"))
    assert row["kl_raw"] == pytest.approx(0.0, abs=1e-6) and row["kl"] == -row["kl_raw"]
    assert row["rdm"] == pytest.approx(1.0, abs=1e-6)
    assert row["cka"] == pytest.approx(1.0, abs=1e-6)
    assert row["flops_raw"] == space.flops(arch)
    other = space.min_arch() if arch != space.min_arch() else space.max_arch()
    (far,) = score_archs(ctx, [other], build_evaluators(["kl", "rdm"], "test"))
    assert far["kl"] < row["kl"] and far["rdm"] < row["rdm"]


def test_unknown_evaluator_names_the_choices():
    with pytest.raises(KeyError, match="unknown evaluator 'klx'.*kl"):
        EVALUATORS.get("klx")


def test_torchscript_teacher_works_for_logit_evaluators_and_is_refused_for_features(synthetic_root, tmp_path):
    import random

    from nas_kd.data import load_dataset
    from nas_kd.errors import UserError
    from nas_kd.models.resnet_teacher import ResNetTeacher

    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    scripted = torch.jit.trace(ResNetTeacher(widths=(8, 8, 8, 8)).eval(), torch.zeros(1, 1, 28, 28))
    space = search_spaces.get("resnet")
    ctx = EvalContext.build(Supernet(space), scripted, data, teacher_stages=["stem", "stage1", "stage2",
                            "stage3", "stage4"], probe_size=16, bn_batches=1, batch_size=64, seed=0, channels_last=False)
    arch = space.sample(random.Random(0))
    assert score_archs(ctx, [arch], build_evaluators(["kl", "synflow"], "test"))[0]["kl_raw"] > 0
    for name in ("cka", "diswot"):
        with pytest.raises(UserError, match="TorchScript"):
            score_archs(ctx, [arch], build_evaluators([name], "test"))


def test_evaluator_bench_compares_supernet_free_evaluators_with_the_supernet_ones(synthetic_root, tmp_path):
    from nas_kd.bench.evaluators import bench_evaluators
    from nas_kd.checkpoint import save_supernet
    from nas_kd.recipes import job_of

    ckpt = tmp_path / "supernet.pt"
    save_supernet(Supernet(search_spaces.get("resnet")), ckpt, epoch=1)
    recipe = load_recipe("recipes/search_fmnist.yaml", [f"data.root={synthetic_root}", "data.val_size=64",
                                                        "search.probe_size=16", "search.bn_batches=1"])
    out = bench_evaluators(job_of(recipe), str(ckpt), ["kl", "cka", "naswot", "flops"], probe_size=16, bn_batches=1,
                           num_archs=2)
    assert set(out["evaluators"]) == {"kl", "cka", "naswot", "flops", "all"}
    assert set(out["times_faster"]) == {"naswot", "flops"}  # the ones that ignore the supernet's weights
    for name, ratios in out["times_faster"].items():
        free = max(out["evaluators"][name]["seconds_per_arch"], 1e-3)
        for ref in ("kl", "cka"):
            assert ratios[ref] == pytest.approx(out["evaluators"][ref]["seconds_per_arch"] / free, abs=0.05)
        assert ratios["min"] == min(ratios["kl"], ratios["cka"])


@pytest.fixture(scope="module")
def tiny_context(synthetic_root):
    from nas_kd.data import load_dataset
    from nas_kd.models.resnet_teacher import ResNetTeacher

    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    torch.manual_seed(0)
    teacher = ResNetTeacher(widths=(8, 8, 8, 8)).eval().requires_grad_(False)
    return EvalContext.build(Supernet(search_spaces.get("resnet")), teacher, data,
                             teacher_stages=["stem", "stage1", "stage2", "stage3", "stage4"], probe_size=32,
                             bn_batches=2, batch_size=32, seed=0, channels_last=False)


def test_p_tg_is_z_scored_accuracy_plus_z_scored_rdm(tiny_context):
    import random
    import statistics

    ctx = tiny_context
    arch = ctx.space.sample(random.Random(7))
    [ev, acc, sim] = build_evaluators([{"name": "p+tg", "performance_weight": 2.0, "guidance_weight": 0.5,
                                        "reference_archs": 4}, "accuracy", "rdm"], "e")
    [row] = score_archs(ctx, [arch], [ev, acc, sim])
    # the reference population: 4 archs drawn with seed 0, one after another from one generator
    rng = random.Random(0)
    ref = score_archs(ctx, [ctx.space.sample(rng) for _ in range(4)], [acc, sim])
    a, r = [x["accuracy_raw"] for x in ref], [x["rdm_raw"] for x in ref]
    expected = (2.0 * (row["accuracy_raw"] - statistics.mean(a)) / (statistics.stdev(a) or 1.0)
                + 0.5 * (row["rdm_raw"] - statistics.mean(r)) / (statistics.stdev(r) or 1.0))
    assert row[ev.name] == pytest.approx(expected)


def test_kd_proxy_learns_from_the_teacher_and_leaves_the_supernet_alone(tiny_context, monkeypatch):
    import random

    from nas_kd.evaluators import kd_proxy

    ctx = tiny_context
    arch = ctx.space.sample(random.Random(3))
    before = {k: v.clone() for k, v in ctx.supernet.state_dict().items()}
    losses = []
    monkeypatch.setattr(kd_proxy, "kd_loss", lambda s, t, temp: losses.append(kd_loss(s, t, temp)) or losses[-1])
    [zero_ish, trained] = build_evaluators([{"name": "kd-proxy", "steps": 1, "lr": 1e-9},
                                            {"name": "kd-proxy", "steps": 30, "lr": 0.05}], "e")
    [row] = score_archs(ctx, [arch], [zero_ish, trained, *build_evaluators(["accuracy"], "a")])
    assert len(losses) == 31 and losses[-1].item() < 0.5 * losses[1].item()  # it learns the teacher's outputs
    assert 0 <= row[trained.name] <= 1 and row[zero_ish.name] == pytest.approx(row["accuracy"], abs=0.05)
    assert all(torch.equal(before[k], v) for k, v in ctx.supernet.state_dict().items()
               if "running" not in k and "num_batches" not in k)  # the shared weights are untouched
