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
    archs = [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(200)]
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
    total = count_flops(t)
    assert 52_000_000 < total < 53_000_000
