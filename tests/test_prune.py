"""``nas-kd prune``: every pruning criterion cuts a network to a FLOPs budget (the least pruning that fits) into a
smaller dense network that saves, loads and runs like a student; bad budgets and options are refused before work."""
import json

import pytest
import torch

from conftest import TEACHER_KW
from nas_kd.cli import main
from nas_kd.errors import BudgetError
from nas_kd.flops import count_flops
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.prune import load_pruned, prune_to_budget, save_pruned
from nas_kd.pruning import PRUNERS

KW = {"widths": [8, 8, 16, 16]}


def network():
    torch.manual_seed(0)
    net = ResNetTeacher(**KW).train()
    with torch.no_grad():  # BatchNorm statistics and scales that differ by channel
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.1, 1.0)
        for _ in range(3):
            net(torch.randn(16, 1, 28, 28))
    return net.eval()


def batches():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(8, 1, 28, 28, generator=g), torch.randint(10, (8,), generator=g)) for _ in range(2)]


def flops(net):
    return count_flops(net, (1, 1, 28, 28)) / 1e6


@pytest.mark.parametrize("name", PRUNERS.available())
def test_contract_every_pruner_meets_the_budget_with_the_least_pruning_and_saves_a_network_that_reloads(name, tmp_path):
    net = network()
    budget = 0.8 * flops(net)  # a global criterion (slim) removes cheap channels too: a mild budget every one meets
    pruner = PRUNERS.build(name, **PRUNERS.example(name))
    pruned, report = prune_to_budget(net, (1, 28, 28), pruner, budget, batches=batches(), steps=5)
    assert flops(pruned) <= budget and report["mflops"] == pytest.approx(flops(pruned))
    assert report["params"] < report["params_before"] and pruned(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert report["ratio_over_budget"] < report["ratio"] <= report["ratio_over_budget"] + 1 / 2**5
    less = pruner.cut(net, (1, 28, 28), report["ratio_over_budget"], batches())
    assert flops(less) > budget  # a share a bisection step smaller does not fit: the least pruning that fits
    origin = {"model": "resnet_fmnist", "kwargs": KW, "num_classes": 10, "in_channels": 1}
    save_pruned(pruned, tmp_path / name, origin, report)
    again = load_pruned(tmp_path / name)
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(again(x), pruned(x), atol=1e-5)
    assert json.loads((tmp_path / name / "pruned.json").read_text())["mflops"] == report["mflops"]


def test_a_budget_that_pruning_cannot_meet_or_need_not_is_refused():
    net = network()
    with pytest.raises(BudgetError, match="nothing to prune"):
        prune_to_budget(net, (1, 28, 28), PRUNERS.build("l1"), 2 * flops(net))
    with pytest.raises(BudgetError, match="raise the budget to at least"):
        prune_to_budget(net, (1, 28, 28), PRUNERS.build("l1"), 1e-4)


def test_prune_command_cuts_fine_tunes_and_resumes_and_the_result_quantizes(tmp_path, synthetic_root, teacher_ckpt,
                                                                          capsys):
    sets = [f"data.root={synthetic_root}", "data.val_size=32", "data.limit_train=64", "data.limit_test=64",
            "data.batch_size=32", f"teacher.checkpoint={teacher_ckpt}", f"teacher.kwargs={json.dumps(TEACHER_KW)}",
            "train.threads=2", "student.ce_weight=0.1", "distill=[{name: kd, weight: 0.9}]"]
    args = ["prune", "--recipe", "recipes/distill_fmnist.yaml", *sum([["--set", s] for s in sets], []),
            "--out", str(tmp_path / "p"), "--budget-fraction", "0.3", "--finetune-epochs", "1"]
    assert main([*args[:-4], "--pruner", "{name: l1, globl: true}", "--budget-fraction", "0.3"]) == 2
    assert "globl" in capsys.readouterr().err and not (tmp_path / "p").exists()  # refused before any work
    assert main(args) == 0
    first = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert first["mflops"] <= 0.3 * first["mflops_before"] and first["finetune_epochs"] == 1 and first["train_images"] > 0
    assert first["pruner"] == {"name": "l1", "global_pruning": False} and 0 < first["ratio"] < 1
    assert main(args) == 0  # everything done: kept, the same network
    again = json.loads((tmp_path / "p" / "prune.json").read_text())
    assert again["test_acc"] == first["test_acc"] and again["mflops"] == first["mflops"]
    # the pruned network goes through nas-kd quantize as a searched student does
    assert main(["quantize", "--recipe", "recipes/distill_fmnist.yaml", *sum([["--set", s] for s in sets], []),
                 "--student", str(tmp_path / "p"), "--out", str(tmp_path / "q"), "--qat-epochs", "1",
                 "--calibration-batches", "1", "--pass-seconds", "0", "--engine", "onnxruntime",
                 "--results", str(tmp_path / "qr")]) == 0
    capsys.readouterr()
    rows = json.loads((tmp_path / "qr.json").read_text())["rows"]
    int8, convs = rows["onnxruntime/qat_kd_int8"]["int8_convs"]
    assert convs >= 10 and int8 == convs - 1  # every convolution but the image-fed one runs in int8


def test_tucker_keeps_the_function_at_full_rank_and_shrinks_the_convolutions_below_it():
    from nas_kd.pruning.tucker import tucker2

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(6, 10, 3, stride=2, padding=1, bias=True)
    x = torch.randn(2, 6, 9, 9)
    assert torch.allclose(tucker2(conv, 1.0)(x), conv(x), atol=1e-5)  # every rank kept: the same map
    half = tucker2(conv, 0.5)
    assert [m.out_channels for m in half] == [3, 5, 10] and half(x).shape == conv(x).shape


def test_a_twin_loses_the_channels_the_ranked_network_loses():
    import copy

    import torch_pruning as tp

    from nas_kd.pruning.base import remove_channels

    net = network()
    twin = copy.deepcopy(net)
    with torch.no_grad():  # other weights: the twin is ranked by net's, not by its own
        for p in twin.parameters():
            p.copy_(torch.randn_like(p))
    alone = copy.deepcopy(twin)
    remove_channels(net, (1, 28, 28), 0.5, tp.importance.MagnitudeImportance(p=1), twin=twin)
    remove_channels(alone, (1, 28, 28), 0.5, tp.importance.MagnitudeImportance(p=1))
    shapes = lambda m: {k: v.shape for k, v in m.state_dict().items()}  # noqa: E731
    assert shapes(twin) == shapes(net) and flops(twin) < 0.7 * flops(network())
    first = next(k for k, v in twin.state_dict().items() if v.dim() == 4)
    assert not torch.equal(twin.state_dict()[first], alone.state_dict()[first])  # its own ranking would differ


def test_lottery_prunes_in_rounds_and_rewinds_the_ticket_to_the_weights_pruning_started_from():
    net = network()
    first = next(k for k, v in net.state_dict().items() if v.dim() == 4)  # the image-fed conv: no input channel cut
    original = net.state_dict()[first].flatten(1)
    budget = 0.5 * flops(net)
    ticket, report = prune_to_budget(net, (1, 28, 28), PRUNERS.build("lottery", rounds=2, steps=3, lr=0.5), budget,
                                     batches=batches(), steps=5)
    tuned, _ = prune_to_budget(net, (1, 28, 28), PRUNERS.build("lottery", rounds=2, steps=3, lr=0.5, rewind=False),
                               budget, batches=batches(), steps=5)
    rounds = report["rounds"]  # the first round to the geometric midpoint, the last to the budget
    assert len(rounds) == 2 and rounds[0]["budget_mflops"] == pytest.approx((flops(net) * budget) ** 0.5)
    assert budget < rounds[0]["mflops"] <= rounds[0]["budget_mflops"] and rounds[1]["mflops"] <= budget
    assert flops(ticket) == pytest.approx(rounds[1]["mflops"]) and flops(tuned) <= budget
    assert {k: v.shape for k, v in ticket.state_dict().items()} == {k: v.shape for k, v in tuned.state_dict().items()}
    for f in ticket.state_dict()[first].flatten(1):  # every surviving filter is one of the network's, unchanged
        assert (original == f).all(1).any()
    assert not any((original == f).all(1).any() for f in tuned.state_dict()[first].flatten(1))  # trained on
    one_round, _ = prune_to_budget(net, (1, 28, 28), PRUNERS.build("lottery", rounds=1), budget, steps=5)
    l1, _ = prune_to_budget(net, (1, 28, 28), PRUNERS.build("l1"), budget, steps=5)
    assert all(torch.equal(a, b) for a, b in zip(one_round.state_dict().values(), l1.state_dict().values()))
