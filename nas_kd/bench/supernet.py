"""``nas-kd bench supernet``: a training step with an arch active in the supernet vs its static export."""
from __future__ import annotations

import random
import statistics
import time
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import search_spaces
from nas_kd.export import export_subnet


def _step_time(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    t0 = time.perf_counter()
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def middle_arch(space, samples: int = 200, seed: int = 0) -> dict:
    """The sampled arch whose FLOPs are the median of ``samples`` random archs."""
    rng = random.Random(seed)
    archs = sorted((space.sample(rng) for _ in range(samples)), key=space.flops)
    return archs[len(archs) // 2]


def bench_supernet(space_name: str, batch_size: int = 256, repeats: int = 10, channels_last: bool = True) -> dict[str, Any]:
    """Median step seconds (forward + backward + SGD) for max / middle / min archs, interleaving the two models."""
    space = search_spaces.get(space_name)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = space.build_supernet().to(memory_format=fmt)
    x = torch.randn(batch_size, *space.input_shape).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,))
    results: dict[str, Any] = {}
    for label, arch in (("max", space.max_arch()), ("middle", middle_arch(space)), ("min", space.min_arch())):
        net.set_arch(arch)
        static = export_subnet(net, arch).to(memory_format=fmt).train()
        net.train()
        opt_super = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
        opt_static = torch.optim.SGD(static.parameters(), lr=1e-3, momentum=0.9)
        for _ in range(2):  # warm-up
            _step_time(net, opt_super, x, y)
            _step_time(static, opt_static, x, y)
        sup, sta = [], []
        for _ in range(repeats):
            sup.append(_step_time(net, opt_super, x, y))
            sta.append(_step_time(static, opt_static, x, y))
        s, t = statistics.median(sup), statistics.median(sta)
        results[label] = {"mflops": space.flops(arch) / 1e6, "supernet_step_s": s, "static_step_s": t, "ratio": s / t}
    return {"space": space_name, "batch_size": batch_size, "repeats": repeats, "channels_last": channels_last,
            "threads": torch.get_num_threads(), "archs": results}
