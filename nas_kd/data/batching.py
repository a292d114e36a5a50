"""Batches of a split: shuffling and augmentation are pure functions of (seed, epoch, step), so a run resumes at any
step and repeats on one machine."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from nas_kd.data.formats import LazyImages
from nas_kd.data.splits import DataBundle, Split
from nas_kd.errors import UserError


def step_seed(seed: int, epoch: int, step: int = -1) -> int:
    """A well-mixed seed for one (seed, epoch, step): every per-step random choice derives from it."""
    return int(np.random.SeedSequence([seed, epoch, step + 1]).generate_state(1)[0])


def _rng(seed: int, epoch: int, step: int = -1) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, epoch, step))


def augment(x: torch.Tensor, gen: torch.Generator, pad: int, pad_value: torch.Tensor, flip: bool) -> torch.Tensor:
    """Random crop after ``pad`` pixels of (black) padding, and a random horizontal flip if ``flip``."""
    n, c, h, w = x.shape
    padded = pad_value.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) + torch.arange(h)
    cols = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) + torch.arange(w)
    if flip:
        cols = torch.where(torch.rand(n, 1, generator=gen) < 0.5, cols.flip(-1), cols)
    batch, chan = torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


class BatchIterator:
    """Iterates a :class:`Split` in batches; shuffling and augmentation derive from (seed, epoch, step)."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment_pad: int = 0,
        pad_value: torch.Tensor | None = None,
        flip: bool = False,
        drop_last: bool = False,
        with_index: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.augment_pad, self.flip, self.drop_last, self.with_index = augment_pad, flip, drop_last, with_index
        self.pad_value = pad_value if pad_value is not None else torch.zeros(split.x.shape[1])

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches ``(x, y)`` of ``epoch`` from ``start_step`` on (to resume mid-epoch); ``(x, y, index)``
        with ``with_index``, ``index`` being the rows of the split (for per-example caches)."""
        n = len(self.split)
        order = torch.randperm(n, generator=_rng(self.seed, epoch)) if self.shuffle else torch.arange(n)
        steps = range(start_step, len(self))
        chunks = [order[step * self.batch_size : (step + 1) * self.batch_size] for step in steps]
        for step, idx, x in zip(steps, chunks, self._images(chunks)):
            y = self.split.y[idx]
            if self.augment_pad or self.flip:
                x = augment(x, _rng(self.seed, epoch, step), self.augment_pad, self.pad_value, self.flip)
            yield (x, y, idx) if self.with_index else (x, y)

    def _images(self, chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each chunk of rows, in order: decoded ahead by worker processes when the split
        streams from files, else sliced from memory."""
        x = self.split.x
        if isinstance(x, LazyImages) and x.workers > 0:
            from torch.utils.data import DataLoader

            yield from DataLoader(_Rows(x, chunks), batch_size=None, num_workers=x.workers, prefetch_factor=4)
        else:
            yield from (x[idx] for idx in chunks)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)


class _Rows:
    """Chunks of rows of a :class:`LazyImages` as a map-style dataset (one decoded batch per item)."""

    def __init__(self, images: LazyImages, chunks: list[torch.Tensor]) -> None:
        self.images, self.chunks = images, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[self.chunks[i]]


def calibration_batches(data: DataBundle, batch_size: int, seed: int) -> BatchIterator:
    """Shuffled, unaugmented training batches for BatchNorm recalibration."""
    return BatchIterator(data.train, batch_size, shuffle=True, seed=seed)
