"""Use the supernet in my own training loop: sample an arch, forward, backward; then export the arch I want.

    python examples/supernet_own_loop.py         # Fashion-MNIST (5,000 training images), 2 epochs

nas_kd gives the weight-sharing supernet of a search space; the loop, optimiser and losses are yours. Here: the
sandwich rule by hand (the largest subnet on the labels, a random one taught by it).
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F

import nas_kd


def main(data, *, space_name: str = "resnet", epochs: int = 2, batch_size: int = 128, seed: int = 0,
         out: str | None = None) -> tuple[torch.nn.Module, float]:
    """Train a supernet in a hand-written loop; export its smallest subnet; returns it and its test accuracy."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    space = nas_kd.search_space(space_name, data.input_shape, data.num_classes)
    net = space.build_supernet()
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = data.train.x, data.train.y
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed + epoch))
        for i in range(0, len(y) - batch_size + 1, batch_size):
            xb, yb = x[order[i:i + batch_size]], y[order[i:i + batch_size]]
            opt.zero_grad()
            net.set_arch(space.max_arch())  # the largest subnet learns from the labels
            big = net(xb)
            F.cross_entropy(big, yb).backward()
            net.set_arch(space.sample(rng))  # a random subnet learns from the largest one (in-place distillation)
            small = net(xb)
            F.kl_div(F.log_softmax(small, 1), F.softmax(big.detach(), 1), reduction="batchmean").backward()
            opt.step()
    student = nas_kd.export_subnet(net, space.min_arch(), data=data, out=out)  # BatchNorm recalibrated for that arch
    with torch.no_grad():
        acc = (student(data.test.x).argmax(1) == data.test.y).float().mean().item()
    print(f"smallest subnet: {space.flops(space.min_arch()) / 1e6:.2f} MFLOPs, test accuracy {100 * acc:.2f} %")
    return student, acc


if __name__ == "__main__":
    main(nas_kd.load_dataset("fashion-mnist", val_size=1000, limit_train=5000, limit_test=2000),
         out="runs/example_own_loop")
