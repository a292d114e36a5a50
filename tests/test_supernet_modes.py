"""The supernet modes of issue 23 on tiny synthetic inputs: progressive shrinking's phases and channel sorting,
SPOS's single path, Cream's board."""
import random
from types import SimpleNamespace

import pytest
import torch

import search_spaces
from nas_kd.config import load_recipe
from nas_kd.errors import OptionError, UserError
from nas_kd.recipe_checks import check_recipe
from nas_kd.train import supernet_trainer
from nas_kd.train.cream import Cream
from nas_kd.train.loop import LoopState
from nas_kd.train.progressive import Progressive, importance, label_dimension, sort_inner_channels, sort_stage_widths
from nas_kd.train.spos import SinglePath
from nas_kd.train.supernet import Kit
from search_spaces import SAMPLERS


def kit(space_name="resnet", *overrides, epoch=0):
    recipe = load_recipe("recipes/supernet_fmnist.yaml", [f"supernet.space={space_name}", *overrides])
    space = search_spaces.get(space_name, (1, 12, 12), 10)
    torch.manual_seed(0)
    net = space.build_supernet()
    loop = SimpleNamespace(state=LoopState(epoch=epoch), optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    job = SimpleNamespace(seed=recipe.seed, train=recipe.train)  # what a step reads of its job
    return Kit(job, supernet_trainer(recipe.supernet.mode), space, net, SAMPLERS.build("uniform", space=space), None,
               [], torch.device("cpu"), loop)


def randomise_bn(net):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def test_progressive_opens_the_dimensions_in_order():
    p = Progressive(phases={"full": 1, "depth": 2, "expand": 1, "width": 1})
    k = kit()
    assert [p.phase_at(e, 5) for e in range(5)] == [
        ("full", set()), ("depth", {"depth"}), ("depth", {"depth"}), ("expand", {"depth", "expand"}),
        ("width", {"depth", "expand", "width"})]
    rng = random.Random(0)
    k.loop.state.epoch = 0
    assert p.others(k, rng) == []  # the largest net alone
    k.loop.state.epoch = 1
    def used(label, arch):  # a block's choice counts only within its stage's depth
        parts = label.split(".")
        return len(parts) < 3 or int(parts[1].removeprefix("block")) <= arch[f"{parts[0]}.depth"]  # 1-based

    for arch in p.others(k, rng):  # depth open: every width and ratio in use at its largest
        assert all(v == max(k.space.choices[lbl]) for lbl, v in arch.items()
                   if label_dimension(lbl) != "depth" and used(lbl, arch))
    assert any(arch != k.space.max_arch() for arch in p.others(k, random.Random(1)))
    # the default schedule has the space's dimensions only (resnet has no elastic kernel), epochs shared out
    d = Progressive()
    r = load_recipe("recipes/supernet_fmnist.yaml", ["train.epochs=9", "supernet.mode=progressive"])
    d.check(r.supernet, r.train.epochs)
    assert d.schedule(9) == [("full", 3), ("depth", 2), ("expand", 2), ("width", 2)]


def test_progressive_options_are_checked_when_the_recipe_loads():
    base = "recipes/supernet_fmnist.yaml"
    with pytest.raises(UserError, match="sum to 3, train.epochs is 10"):
        check_recipe(load_recipe(base, ['supernet.mode={name: progressive, phases: {full: 1, depth: 2}}']))
    with pytest.raises(UserError, match="resnet space has no elastic \\['kernel'\\]"):
        check_recipe(load_recipe(base, ['supernet.mode={name: progressive, phases: {kernel: 10}}']))
    with pytest.raises(OptionError, match="'full' .* can only come first"):
        supernet_trainer({"name": "progressive", "phases": {"depth": 1, "full": 1}})
    with pytest.raises(OptionError, match="has no option 'phase'"):
        supernet_trainer({"name": "progressive", "phase": {}})


@pytest.mark.parametrize("space", ["resnet", "mbv2"])
def test_channel_sorting_keeps_the_largest_net_and_sorts_by_importance(space):
    k = kit(space)
    net = k.net
    randomise_bn(net)
    x = torch.randn(4, 1, 12, 12)
    # momentum buffers exist and must travel with their weights
    net.train()
    k.net.set_arch(k.space.max_arch())
    net(x).sum().backward()
    k.loop.optimizer.step()
    net.eval()
    reader = net.stage2.blocks[0].inner_channels()[1][0]
    before_w = reader.detach().clone()
    before_m = k.loop.optimizer.state[reader]["momentum_buffer"].clone()
    with torch.no_grad():
        before = net(x)
    sort_inner_channels(net, k.loop.optimizer)
    order = importance([before_w]).argsort(descending=True, stable=True)
    assert torch.equal(reader.detach(), before_w[:, order])
    assert torch.equal(k.loop.optimizer.state[reader]["momentum_buffer"], before_m[:, order])
    sort_stage_widths(net, k.loop.optimizer)
    with torch.no_grad():
        after = net(x)
    assert torch.allclose(before, after, atol=1e-5)
    for name in net.stage_names:  # most important first, everywhere
        for block in getattr(net, name).blocks:
            imp = importance(block.inner_channels()[1])
            assert torch.all(imp[:-1] >= imp[1:] - 1e-4)  # the sums, recomputed after the move, may differ in rounding
    stages = [getattr(net, name).blocks for name in net.stage_names]
    for i, blocks in enumerate(stages):  # a stage's channels, by everything that reads them
        readers = [r for b in blocks[1:] for r in b.outer_channels()[1]]
        readers += stages[i + 1][0].outer_channels()[1] if i + 1 < len(stages) else [net.head[-1].weight]
        imp = importance(readers)
        assert torch.all(imp[:-1] >= imp[1:] - 1e-4)


def test_spos_trains_one_path_per_step():
    k = kit("resnet")
    calls = []
    forward = k.forward
    k.forward = lambda arch, x: calls.append((arch, torch.is_grad_enabled())) or forward(arch, x)
    x, y = torch.randn(8, 1, 12, 12), torch.randint(0, 10, (8,))
    k.mode = SinglePath(soft_labels="none")
    k.mode.step(k, x, y)
    assert len(calls) == 1 and calls[0][1]
    arch = calls[0][0]
    for i, name in enumerate(k.net.stage_names, start=1):  # blocks past the path's depth get no gradient
        for j, block in enumerate(getattr(k.net, name).blocks):
            grads = [p.grad for p in block.parameters()]
            assert all(g is None for g in grads) == (j >= arch[f"stage{i}.depth"])
    calls.clear()
    k.mode = SinglePath(soft_labels="inplace")
    k.distillers = []
    k.distill = lambda out, y, soft: torch.nn.functional.mse_loss(out, soft)
    k.mode.step(k, x, y)
    assert [g for _, g in calls] == [False, True] and calls[0][0] == k.space.max_arch()  # the max only teaches


def test_cream_board_keeps_its_k_best_paths():
    c = Cream(board_size=3, margin=5.0)
    space = search_spaces.get("resnet")
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(6)]
    for arch, acc, mf in zip(archs, [50, 60, 55, 40, 70, 58], [5, 5, 5, 5, 5, 5]):
        c.offer(arch, acc, mf)
        assert len(c.board) <= 3
        assert [e["acc"] for e in c.board] == sorted((e["acc"] for e in c.board), reverse=True)
    assert [e["acc"] for e in c.board] == [70, 60, 55]  # 58 beats 55 by less than the margin, at no fewer FLOPs
    c.offer(archs[5], 58, 4)  # better than the worst at fewer FLOPs: in
    assert [(e["acc"], e["mflops"]) for e in c.board] == [(70, 5), (60, 5), (58, 4)]
    c.offer(archs[0], 40, 1)  # worse than the worst: out
    assert len(c.board) == 3 and all(e["arch"] != archs[0] for e in c.board)
    with pytest.raises(UserError, match="soft_labels must be 'inplace'"):
        Cream(soft_labels="teacher")
    with pytest.raises(OptionError, match=r"supernet.mode \(cream\): .*soft_labels must be 'inplace'"):
        check_recipe(load_recipe("recipes/supernet_fmnist.yaml", ["supernet.mode={name: cream, soft_labels: teacher}"]))
