import json
import random

import pytest

from nas_kd.errors import UserError

import search_spaces
from nas_kd.supernet import Supernet
from search_spaces.base import StagedSpace

SPACES = search_spaces.available()


def test_registry():
    assert {"mbv2", "resnet"} <= set(SPACES)
    with pytest.raises(KeyError, match="Available: mbv2, resnet"):
        search_spaces.get("mbv3")


@pytest.mark.parametrize("name", SPACES)
def test_declared_with_nni_mutable(name):
    import nni.mutable as nm

    space = search_spaces.get(name)
    simplified = space.mutable.simplify()
    assert all(isinstance(c, nm.Categorical) for c in simplified.values())
    assert list(simplified) == space.labels()
    assert "stage2.depth" in simplified and "stage2.block1" in " ".join(simplified)
    # nni accepts our canonical archs
    arch = space.sample(random.Random(0))
    assert space.mutable.contains(arch)


def test_sizes():
    assert search_spaces.get("mbv2").size() >= 10**8
    assert search_spaces.get("resnet").size() >= 10**8


@pytest.mark.parametrize("name", SPACES)
def test_sample_is_seeded_canonical_and_json(name):
    space = search_spaces.get(name)
    a = [space.sample(random.Random(7)) for _ in range(2)]
    assert a[0] == a[1] and space.contains(a[0]) and space.validate(a[0]) == a[0]
    assert json.loads(json.dumps(a[0])) == a[0]
    archs = {json.dumps(space.sample(random.Random(i)), sort_keys=True) for i in range(50)}
    assert len(archs) > 40


@pytest.mark.parametrize("name", SPACES)
def test_validation_errors_name_label_and_values(name):
    space = search_spaces.get(name)
    arch = space.max_arch()
    bad = dict(arch, **{"stage2.width": 7})
    with pytest.raises(UserError, match=r"stage2\.width=7 is not allowed; allowed values: \["):
        space.validate(bad)
    missing = {k: v for k, v in arch.items() if k != "stage3.depth"}
    with pytest.raises(UserError, match=r"missing label 'stage3\.depth'"):
        space.validate(missing)
    with pytest.raises(UserError, match=r"unknown label 'stage2\.widht' \(did you mean 'stage2\.width'"):
        space.validate(dict(arch, **{"stage2.widht": 24}))
    with pytest.raises(UserError, match="is a dict"):
        space.validate([1, 2])
    assert not space.contains(bad) and space.contains(arch)


def test_canonical_ignores_inactive_blocks():
    space = search_spaces.get("mbv2")
    arch = space.min_arch()
    assert arch["stage2.depth"] == 1
    other = dict(arch, **{"stage2.block3.kernel": 7})  # block 3 is inactive at depth 1
    assert space.validate(other) == arch
    assert space.spec(space.validate(other)) == space.spec(arch)


@pytest.mark.parametrize("name", SPACES)
def test_max_min_and_flops_order(name):
    space = search_spaces.get(name)
    fmax, fmin = space.flops(space.max_arch()), space.flops(space.min_arch())
    rng = random.Random(1)
    for _ in range(30):
        assert fmin <= space.flops(space.sample(rng)) <= fmax
    assert space.params(space.min_arch()) < space.params(space.max_arch())


@pytest.mark.parametrize("name", SPACES)
def test_stage_candidates_enumerate_each_stage(name):
    space = search_spaces.get(name)
    for stage in range(1, len(space.stages) + 1):
        cands = space.stage_candidates(stage)
        assert len(cands) == space.stage_size(stage)
        assert len({json.dumps(c, sort_keys=True) for c in cands}) == len(cands)
        assert all(set(c) == set(space.stage_labels(stage)) for c in cands)
        # each candidate completes a valid architecture
        assert space.contains({**space.min_arch(), **cands[-1]})
    assert space.size() == __import__("math").prod(space.stage_size(i) for i in range(1, len(space.stages) + 1))


def test_new_space_by_subclassing():
    class Tiny(StagedSpace):
        name, family = "tiny", "resnet"
        kernel_sizes = [3]

        def __init__(self):
            super().__init__([search_spaces.StageDef(1, (1,), (8,), {"ratio": (1.0,)})], stem_width=8)

        def block(self, cin, width, stride, choices, first):
            return {"in": cin, "out": width, "stride": stride, "kernel": 3, "mid": width,
                    "shortcut": "projection" if first else "identity"}

    t = Tiny()
    assert t.size() == 1 and t.flops(t.max_arch()) > 0
    net = Supernet(t)
    assert net(__import__("torch").zeros(2, 1, 28, 28)).shape == (2, 10)
