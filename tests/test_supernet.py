import random

import pytest
import torch

import search_spaces
from nas_kd.bn import recalibrate_bn
from nas_kd.checkpoint import CheckpointError, load_supernet, save_supernet
from nas_kd.errors import UserError
from nas_kd.export import export_subnet, load_subnet, save_subnet
from nas_kd.supernet import Supernet

SPACES = search_spaces.available()


def randomize_bn(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return net


def archs(space, n, seed=0):
    rng = random.Random(seed)
    return [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(n)]


@pytest.mark.parametrize("name", SPACES)
@pytest.mark.parametrize("kernel_transform", [False, True])
def test_export_matches_supernet(name, kernel_transform):
    space = search_spaces.get(name)
    net = randomize_bn(Supernet(space, kernel_transform=kernel_transform)).eval()
    if kernel_transform:  # make the transforms non-trivial
        for p in net.parameters():
            if p.ndim == 2 and p.shape[0] == p.shape[1] and p.shape[0] in (9, 25):
                p.data.add_(0.05 * torch.randn_like(p))
    x = torch.randn(8, 1, 28, 28)
    for arch in archs(space, 25 if not kernel_transform else 8):
        with torch.no_grad():
            net.set_arch(arch)
            ref = net(x)
            out = export_subnet(net, arch).eval()(x)
        assert (ref - out).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", SPACES)
def test_invalid_arch_leaves_active_arch(name):
    space = search_spaces.get(name)
    net = Supernet(space)
    arch = space.min_arch()
    net.set_arch(arch)
    with pytest.raises(UserError, match="stage1.depth=99"):
        net.set_arch(dict(arch, **{"stage1.depth": 99}))
    assert net.arch == arch


def test_set_arch_context_manager_restores():
    space = search_spaces.get("mbv2")
    net = Supernet(space)
    assert net.arch == space.max_arch()
    with net.set_arch(space.min_arch()) as same:
        assert same is net and net.arch == space.min_arch()
    assert net.arch == space.max_arch()


def test_only_active_path_computes_and_gets_gradients():
    space = search_spaces.get("mbv2")
    net = Supernet(space)
    net.set_arch(space.min_arch())
    net(torch.randn(2, 1, 28, 28)).sum().backward()
    # depth 1: block 2 of every stage is untouched
    assert all(p.grad is None for p in net.stage2.blocks[1].parameters())
    # width slice: only the first channels of the active conv received gradient
    w = net.stage2.blocks[0].expand.conv.weight
    active_in = space.min_arch()["stage1.width"]
    assert w.grad[:, active_in:].abs().sum() == 0 and w.grad[:, :active_in].abs().sum() > 0


@pytest.mark.parametrize("name", SPACES)
def test_save_load_roundtrip(tmp_path, name):
    space = search_spaces.get(name)
    net = randomize_bn(Supernet(space)).eval()
    arch = space.sample(random.Random(3))
    sub = export_subnet(net, arch).eval()
    save_subnet(sub, tmp_path / "sub", torchscript=True)
    back = load_subnet(tmp_path / "sub")
    x = torch.randn(4, 1, 28, 28)
    assert torch.equal(sub(x), back(x)) and back.arch == arch
    ts = torch.jit.load(str(tmp_path / "sub" / "model.ts"))
    assert torch.allclose(ts(x), sub(x), atol=1e-6)
    meta = __import__("json").loads((tmp_path / "sub" / "arch.json").read_text())
    assert meta["flops"] == space.flops(arch) and meta["space"] == name
    save_supernet(net, tmp_path / "super.pt")
    again = load_supernet(tmp_path / "super.pt").eval()
    again.set_arch(arch)
    net.set_arch(arch)
    assert torch.equal(again(x), net(x))


def test_load_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no arch.json"):
        load_subnet(tmp_path)
    (tmp_path / "arch.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_subnet(tmp_path)
    from nas_kd.checkpoint import save_checkpoint

    save_checkpoint({"model": {}}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="not of a supernet"):
        load_supernet(tmp_path / "x.pt")


def test_recalibrate_bn_sets_exact_batch_statistics():
    space = search_spaces.get("resnet")
    net = Supernet(space)
    net.set_arch(space.min_arch())
    x = torch.randn(64, 1, 28, 28)
    momentum = net.stem.bn.momentum
    recalibrate_bn(net, [x[:32], (x[32:], None)], num_batches=2)
    assert not net.training and net.stem.bn.momentum == momentum
    with torch.no_grad():
        feats = net.stem.conv(x)
    c = feats.shape[1]
    assert torch.allclose(net.stem.bn.running_mean[:c], feats.mean((0, 2, 3)), atol=1e-5)


def test_supernet_for_another_input_shape_trains_saves_and_refuses_other_data(tmp_path):
    space = search_spaces.get("resnet", input_shape=(3, 32, 32), num_classes=5)
    net = space.build_supernet()
    net.set_arch(space.min_arch())
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 5, (4,))
    loss = torch.nn.functional.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    save_supernet(net, tmp_path / "s.pt")
    again = load_supernet(tmp_path / "s.pt", input_shape=(3, 32, 32))
    assert again.space.input_shape == (3, 32, 32) and again.num_classes == 5
    sub = export_subnet(again.eval(), space.min_arch())
    save_subnet(sub, tmp_path / "sub")
    loaded = load_subnet(tmp_path / "sub")
    assert loaded.input_shape == (3, 32, 32)
    again.set_arch(space.min_arch())
    assert torch.allclose(loaded(x), again.eval()(x), atol=1e-5)
    with pytest.raises(UserError, match="3x32x32.*1x28x28"):
        load_supernet(tmp_path / "s.pt", input_shape=(1, 28, 28))


def test_a_spec_saved_before_input_shapes_still_loads(tmp_path):
    space = search_spaces.get("resnet")
    sub = export_subnet(Supernet(space).eval(), space.min_arch())
    save_subnet(sub, tmp_path / "sub")
    import json

    meta = json.loads((tmp_path / "sub/arch.json").read_text())
    spec = meta["spec"]
    c, h, _ = spec.pop("input_shape")
    meta["spec"] = {**spec, "in_channels": c, "image_size": h}
    (tmp_path / "sub/arch.json").write_text(json.dumps(meta))
    assert load_subnet(tmp_path / "sub").input_shape == (1, 28, 28)


@pytest.mark.parametrize("shape,classes", [((28, 28), 10), ((1, 0, 28), 10), ((1, 28, 28), 1), ("1x28x28", 10)])
def test_bad_input_shape_is_a_user_error(shape, classes):
    with pytest.raises(UserError, match="input_shape|num_classes"):
        search_spaces.get("resnet", input_shape=shape, num_classes=classes)
