import random

import pytest

import search_spaces
from search_spaces import SAMPLERS


@pytest.mark.parametrize("name", ["resnet", "mbv2"])
def test_flops_sampler_covers_every_bin(name):
    space = search_spaces.get(name)
    sampler = SAMPLERS.build("flops", space=space, bins=4)
    archs = sampler.sample(random.Random(0), 40)
    flops = [space.flops(a) for a in archs]
    hits = [sum(sampler.bin_range(b)[0] <= f < sampler.bin_range(b)[1] for f in flops) for b in range(3)]
    hits.append(sum(f >= sampler.bin_range(3)[0] for f in flops))
    assert hits == [10, 10, 10, 10]
    uniform = [space.flops(a) for a in SAMPLERS.build("uniform", space=space).sample(random.Random(0), 40)]
    assert sum(f >= sampler.bin_range(3)[0] for f in uniform) < 10  # what stratifying is for
    assert all(space.contains(a) for a in archs)


def test_samplers_are_seeded_and_named():
    space = search_spaces.get("resnet")
    s = SAMPLERS.build("flops", space=space)
    assert s.sample(random.Random(3), 5) == s.sample(random.Random(3), 5)
    with pytest.raises(KeyError, match="unknown sampler 'flop'"):
        SAMPLERS.build("flop", space=space)
