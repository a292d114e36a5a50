"""``nas-kd bench flops``: the per-block cost table vs fvcore, per architecture and input shape."""
from __future__ import annotations

import random
import statistics
import time
from typing import Any

import search_spaces
from nas_kd.export import export_subnet
from nas_kd.flops import count_flops

SHAPES = ((1, 28, 28), (3, 32, 32), (3, 64, 64))


def bench_flops(spaces: list[str], num_archs: int = 50, seed: int = 0) -> dict[str, Any]:
    """Seconds per arch for ``space.flops`` (table) and for fvcore on the exported subnet, at 1x28x28; and
    whether the two agree exactly at every shape of :data:`SHAPES` (max, min and the random archs)."""
    out: dict[str, Any] = {"num_archs": num_archs, "seed": seed, "spaces": {}}
    for name in spaces:
        space = search_spaces.get(name)
        net = space.build_supernet()
        rng = random.Random(seed)
        archs = [space.sample(rng) for _ in range(num_archs)]
        subnets = [export_subnet(net, a) for a in archs]  # export time is not part of either count
        t0 = time.perf_counter()
        fv = [count_flops(s, (1, *space.input_shape)) for s in subnets]
        t_fv = (time.perf_counter() - t0) / num_archs
        reps = 20
        t0 = time.perf_counter()
        for _ in range(reps):
            table = [space.flops(a) for a in archs]
        t_table = (time.perf_counter() - t0) / (num_archs * reps)
        out["spaces"][name] = {
            "fvcore_seconds_per_arch": t_fv,
            "table_seconds_per_arch": t_table,
            "speedup": t_fv / t_table,
            "all_equal": table == fv,
            "median_mflops": statistics.median(fv) / 1e6,
            "equal_at_shapes": {"x".join(map(str, s)): shape_agrees(name, s, archs) for s in SHAPES},
        }
    return out


def shape_agrees(name: str, shape: tuple[int, int, int], archs: list[dict], num_classes: int = 10) -> bool:
    """Whether the cost table equals fvcore (FLOPs) and ``count_params`` for the max, min and ``archs`` of
    space ``name`` built for ``shape`` inputs."""
    from nas_kd.flops import count_params

    space = search_spaces.get(name, input_shape=shape, num_classes=num_classes)
    net = space.build_supernet()
    for arch in [space.max_arch(), space.min_arch(), *archs]:
        sub = export_subnet(net, arch)
        if (space.flops(arch), space.params(arch)) != (count_flops(sub, (1, *shape)), count_params(sub)):
            return False
    return True
