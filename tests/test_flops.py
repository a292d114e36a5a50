import random

import pytest
import torch

import search_spaces
from nas_kd.export import export_subnet
from nas_kd.flops import count_flops, count_params
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.supernet import Supernet


@pytest.mark.parametrize("name", search_spaces.available())
def test_cost_table_equals_fvcore_exactly(name):
    space = search_spaces.get(name)
    net = Supernet(space)
    rng = random.Random(123)
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(60)]
    for arch in archs:
        sub = export_subnet(net, arch)
        assert space.flops(arch) == count_flops(sub, (1, 1, 28, 28)), arch
        assert space.params(arch) == count_params(sub), arch


def test_count_flops_known_conv():
    conv = torch.nn.Conv2d(2, 3, 3, padding=1, bias=False)
    assert count_flops(conv, (1, 2, 5, 5)) == 3 * 2 * 9 * 25
    assert count_params(conv) == 54


def test_teacher_flops_convention():
    # BatchNorm counts (2 per element): total sits a few percent above conv+linear MACs
    t = ResNetTeacher()
    total = count_flops(t, (1, 1, 28, 28))
    assert 52_000_000 < total < 53_000_000


@pytest.mark.parametrize("name", search_spaces.available())
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (3, 64, 64), (2, 20, 36)])
def test_cost_table_equals_fvcore_at_any_input_shape(name, shape):
    space = search_spaces.get(name, input_shape=shape, num_classes=100)
    net = space.build_supernet()
    rng = random.Random(7)
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(4)]:
        sub = export_subnet(net, arch)
        assert sub.input_shape == shape and sub(torch.zeros(1, *shape)).shape == (1, 100)
        assert space.flops(arch) == count_flops(sub, (1, *shape)), arch
        assert space.params(arch) == count_params(sub), arch


def test_flops_grow_with_the_input():
    small, big = search_spaces.get("resnet"), search_spaces.get("resnet", input_shape=(3, 32, 32))
    arch = small.max_arch()
    assert big.flops(arch) > small.flops(arch) and big.params(arch) > small.params(arch)  # 3-channel stem
    assert search_spaces.get("resnet", input_shape=[1, 28, 28]) is small  # lists and tuples name one space
