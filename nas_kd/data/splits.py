"""Seeded train / validation / test splits, normalised on one path (the training split's per-channel statistics),
in memory or streamed from files; :func:`load_data` for a recipe's ``data`` section."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas_kd.config import DataConfig
from nas_kd.data.formats import DatasetError, FileIndex, LazyImages, decode, decode_index
from nas_kd.data.registry import DatasetKind, dataset_kind, default_root

@dataclass
class Split:
    """Normalised images ``x`` (float32, NCHW; a tensor, or :class:`LazyImages` decoded a batch at a time)
    and labels ``y`` (int64)."""

    x: "torch.Tensor | LazyImages"
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)



@dataclass
class DataBundle:
    """Train / val / test splits plus what augmentation needs to know."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    pad_value: torch.Tensor  # per-channel value of a black pixel after normalisation
    flip: bool
    mean: torch.Tensor | None = None  # the per-channel normalisation every split went through (images in [0, 1])
    std: torch.Tensor | None = None
    name: str = "in-memory"  # the registered dataset's name (recorded with results)

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]


def _bundle(train: Split, val: Split, test: Split, y_train: torch.Tensor, y_test: torch.Tensor,
            input_shape: tuple[int, int, int], mean: torch.Tensor, std: torch.Tensor, flip: bool) -> DataBundle:
    return DataBundle(train=train, val=val, test=test, num_classes=int(max(y_train.max(), y_test.max())) + 1,
                      input_shape=input_shape, pad_value=(-mean / std).view(-1), flip=flip, mean=mean.view(-1),
                      std=std.view(-1))


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of training images scaled to [0, 1]: every split is normalised by them."""
    return x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)


def load_dataset(
    name: str,
    root: str | None = None,
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_val: int | None = None,
    limit_test: int | None = None,
    memory_limit_mb: float = 4096,
    workers: int = 2,
) -> DataBundle:
    """Load the registered dataset ``name`` (:data:`DATASETS`) into normalised splits.

    The validation split is carved from the train set with a permutation seeded by
    ``split_seed``; the test set is kept apart. ``limit_*`` keep the first examples (with ``limit_train`` and no
    ``limit_val``, a fifth as many validation rows).
    Normalisation uses the train split's per-channel mean and std. A dataset of files (``kind.index``)
    whose float images would take more than ``memory_limit_mb`` streams instead: :func:`_stream`.
    """
    kind = dataset_kind(name)
    root = root or default_root(name)
    if kind.index is None:
        (xtr, ytr), (xte, yte) = kind.load(root)
    else:  # listed once: streamed if too large, else decoded from the same listing
        index = kind.index(root)
        images = len(index.train[0]) + len(index.test[0])
        if 4 * images * int(np.prod(index.shape)) > memory_limit_mb * 2**20:
            return dataclasses.replace(_stream(index, kind, val_size, split_seed, limit_train, limit_val, limit_test,
                                               workers), name=name)
        (xtr, ytr), (xte, yte) = decode_index(index, root)
    return from_tensors(xtr, ytr, xte, yte, val_size=val_size, split_seed=split_seed, limit_train=limit_train,
                        limit_val=limit_val, limit_test=limit_test, flip=kind.flip, name=name)


def from_tensors(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor | None, y_test: torch.Tensor | None,
                 *, val_size: int, split_seed: int = 0, limit_train: int | None = None, limit_val: int | None = None,
                 limit_test: int | None = None, flip: bool = False, name: str = "in-memory") -> DataBundle:
    """Normalised splits of images in memory (NCHW; ``uint8`` in 0..255, or floats in [0, 1]) and integer labels:
    ``val_size`` training rows (a permutation seeded by ``split_seed``) validate, the rest train; the test images
    are kept apart (without them, the validation rows are also the test split). Every split is normalised by the
    training split's per-channel mean and std."""
    scale = 255.0 if x_train.dtype == torch.uint8 else 1.0
    train_idx, val_idx = _split_rows(len(y_train), val_size, split_seed, limit_train, limit_val)
    if x_test is None:
        x_test, y_test = x_train[val_idx], y_train[val_idx]
    if limit_test is not None:
        x_test, y_test = x_test[:limit_test], y_test[:limit_test]
    xtrain = x_train[train_idx].float() / scale
    mean, std = _channel_stats(xtrain)
    std = std.clamp_min(1e-8)  # a constant channel stays finite

    def norm(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() / scale - mean) / std).contiguous()

    return dataclasses.replace(
        _bundle(Split((xtrain - mean) / std, y_train[train_idx]), Split(norm(x_train[val_idx]), y_train[val_idx]),
                Split(norm(x_test), y_test), y_train, y_test, tuple(int(v) for v in x_train.shape[1:]), mean, std,
                flip), name=name)


def _split_rows(n: int, val_size: int, split_seed: int, limit_train: int | None,
                limit_val: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, validation rows) of a training set of ``n``: a permutation seeded by ``split_seed``;
    ``limit_train`` keeps the first training rows, ``limit_val`` the first validation rows (default with
    ``limit_train``: a fifth as many)."""
    if not 0 <= val_size < n:
        raise DatasetError(f"data.val_size={val_size} must be in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if limit_train is not None:
        train_idx = train_idx[:limit_train]
    if limit_val is not None:
        val_idx = val_idx[:limit_val]
    elif limit_train is not None:
        val_idx = val_idx[: max(1, min(val_size, limit_train // 5))]
    return train_idx, val_idx


STATS_SAMPLE = 1000  # training images the mean and std of a streamed dataset are estimated from


def _stream(index: FileIndex, kind: DatasetKind, val_size: int, split_seed: int, limit_train: int | None,
            limit_val: int | None, limit_test: int | None, workers: int) -> DataBundle:
    """Splits of :class:`LazyImages`, drawn exactly as :func:`load_dataset` draws in-memory ones; the
    normalisation statistics come from up to :data:`STATS_SAMPLE` seeded training images."""
    files, ytr = index.train
    test_files, yte = index.test
    train_idx, val_idx = _split_rows(len(ytr), val_size, split_seed, limit_train, limit_val)
    if limit_test is not None:
        test_files, yte = test_files[:limit_test], yte[:limit_test]
    sample = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(split_seed))[:STATS_SAMPLE]]
    x = torch.from_numpy(decode([files[i] for i in sample.tolist()], index.mode, index.shape)).float() / 255.0
    mean, std = _channel_stats(x)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    def split(chosen: list[Path], labels: torch.Tensor, w: int = 0) -> Split:
        return Split(LazyImages(chosen, index.mode, index.shape, mean, std, w), labels)

    return _bundle(split([files[i] for i in train_idx.tolist()], ytr[train_idx], workers),
                   split([files[i] for i in val_idx.tolist()], ytr[val_idx]), split(list(test_files), yte),
                   ytr, yte, index.shape, mean, std, kind.flip)


def load_data(cfg: DataConfig) -> DataBundle:
    """A recipe's ``data`` section: its dataset, split and normalised. With ``data.synthetic`` (a dataset of
    ``nas-kd synthesize``), training and validation use the synthetic inputs (the last tenth validates: agreement
    with their target classes, not real accuracy) and the real test split stays for evaluation only."""
    bundle = load_dataset(cfg.dataset, cfg.root, val_size=cfg.val_size, split_seed=cfg.split_seed,
                          limit_train=cfg.limit_train, limit_val=cfg.limit_val, limit_test=cfg.limit_test,
                          memory_limit_mb=cfg.memory_limit_mb, workers=cfg.workers)
    if cfg.synthetic is None:
        return bundle
    from nas_kd.datafree import load_synthetic, synthetic_validation_size

    x, y = load_synthetic(cfg.synthetic, bundle.mean, bundle.std)
    if tuple(x.shape[1:]) != tuple(bundle.input_shape):
        raise DatasetError(f"data.synthetic: {cfg.synthetic} holds {tuple(x.shape[1:])} inputs, the data "
                           f"{tuple(bundle.input_shape)}")
    n_val = synthetic_validation_size(len(y))
    return dataclasses.replace(bundle, train=Split(x[:-n_val], y[:-n_val]), val=Split(x[-n_val:], y[-n_val:]),
                               flip=False)
