"""Architecture samplers, chosen by name: ``uniform`` (each choice uniformly) and ``flops``.

``flops`` stratifies over the space's FLOPs range: the range [min, max] is cut into equal-width
bins and each draw targets one bin by rejection sampling (after ``tries`` misses it keeps the
draw closest to the bin). Uniform sampling concentrates on mid-sized networks and almost never
reaches the largest ones, so the proposals are size-biased: a size level ``s ~ U(0, 1)`` is
drawn, then every choice takes the value at position ``s + N(0, 0.25)`` of its sorted values.
Stratifying trains (or, for ground truth, covers) the small and large ends too.
"""
from __future__ import annotations

import random

from nas_kd.typecheck import AtLeast1
from nas_kd.registry import Registry
from search_spaces.base import Arch, StagedSpace

SAMPLERS: Registry = Registry("sampler")


@SAMPLERS.register("uniform")
class UniformSampler:
    """Each label uniformly from its values (the space's own ``sample``)."""

    def __init__(self, space: StagedSpace) -> None:
        self.space = space

    def sample(self, rng: random.Random, n: int) -> list[Arch]:
        """``n`` architectures."""
        return [self.space.sample(rng) for _ in range(n)]


@SAMPLERS.register("flops")
class FlopsStratifiedSampler:
    """``n`` draws spread over ``bins`` equal-width FLOPs bins between ``lo`` and ``hi`` (default: the
    space's min and max FLOPs)."""

    def __init__(self, space: StagedSpace, bins: AtLeast1 = 4, tries: AtLeast1 = 300, lo: float | None = None,
                 hi: float | None = None) -> None:
        self.space, self.bins, self.tries = space, bins, tries
        self.lo = space.flops(space.min_arch()) if lo is None else lo
        self.hi = space.flops(space.max_arch()) if hi is None else hi

    def bin_range(self, b: int) -> tuple[float, float]:
        """FLOPs interval [lo, hi) of bin ``b`` (the last bin includes the max)."""
        width = (self.hi - self.lo) / self.bins
        return self.lo + b * width, self.lo + (b + 1) * width

    def propose(self, rng: random.Random) -> Arch:
        """A size-biased random architecture (see the module docstring)."""
        level = rng.random()
        arch = {}
        for label, values in self.space.choices.items():
            ordered = sorted(values)
            pos = min(max(level + rng.gauss(0.0, 0.25), 0.0), 1.0)
            arch[label] = ordered[round(pos * (len(ordered) - 1))]
        return self.space.canonical(arch)

    def sample_in_bin(self, rng: random.Random, b: int) -> Arch:
        """One architecture whose FLOPs fall in bin ``b`` (or the closest of ``tries`` draws)."""
        lo, hi = self.bin_range(b)
        best, best_gap = None, float("inf")
        for _ in range(self.tries):
            arch = self.propose(rng)
            f = self.space.flops(arch)
            gap = max(lo - f, f - hi, 0.0) if b < self.bins - 1 else max(lo - f, 0.0)
            if gap == 0.0:
                return arch
            if gap < best_gap:
                best, best_gap = arch, gap
        return best

    def sample(self, rng: random.Random, n: int) -> list[Arch]:
        """``n`` architectures; bins are visited in a random order, each once per ``bins`` draws."""
        order: list[int] = []
        while len(order) < n:
            cycle = list(range(self.bins))
            rng.shuffle(cycle)
            order += cycle
        return [self.sample_in_bin(rng, b) for b in order[:n]]
