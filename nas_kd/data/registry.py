"""The dataset registry (:data:`DATASETS`): each name a :class:`DatasetKind` (how to read it, whether flips keep
its labels, where Debian installs it)."""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nas_kd.data.formats import (
    DATA_ENV,
    FASHION_MNIST_DIR,
    DatasetError,
    FileIndex,
    index_imagefolder,
    load_cifar10,
    load_cifar100,
    load_idx,
    load_imagefolder,
    load_npz,
    write_idx,
)
from nas_kd.registry import Registry


@dataclass(frozen=True)
class DatasetKind:
    """How to read one kind of dataset: ``load(root)`` gives ``((x_train, y_train), (x_test, y_test))`` as
    uint8 NCHW images and int64 labels; ``flip`` says whether horizontal flips keep labels valid;
    ``index(root)``, for datasets of files, lists them without decoding, so one larger than memory streams."""

    load: Callable[[str | Path], tuple]
    flip: bool
    tiny: Callable[[Path], str]  # writes a tiny copy in this format under a directory; returns what load() takes
    default_dir: str | None = None
    index: Callable[[str | Path], FileIndex] | None = None


def _tiny_cifar(names: list[str], label_key: bytes, classes: int, n: int = 8) -> Callable[[Path], str]:
    def write(root: Path) -> str:
        rng = np.random.default_rng(0)
        for name in names:
            batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
                     label_key: [int(v) for v in rng.integers(0, classes, n)]}
            (root / name).write_bytes(pickle.dumps(batch))
        return str(root)

    return write


def _tiny_npz(root: Path) -> str:
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", x_train=rng.integers(0, 256, (40, 3, 8, 8), dtype=np.uint8),
             y_train=rng.integers(0, 4, 40), x_test=rng.integers(0, 256, (12, 3, 8, 8), dtype=np.uint8),
             y_test=rng.integers(0, 4, 12))
    return str(root / "data.npz")


def _tiny_imagefolder(root: Path) -> str:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 10), ("test", 3)):
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)).save(root / split / c / f"{i}.png")
    return str(root)


def _tiny_idx(root: Path) -> str:
    return write_idx(root, n_train=40, n_test=12)


# Horizontal flips keep the label for clothes and natural images, not for digits.


DATASETS: Registry = Registry("dataset")
DATASETS.register("fashion-mnist")(DatasetKind(load_idx, True, _tiny_idx, FASHION_MNIST_DIR))
DATASETS.register("mnist")(DatasetKind(load_idx, False, _tiny_idx, "/usr/share/datasets/mnist"))
DATASETS.register("idx")(DatasetKind(load_idx, False, _tiny_idx))  # any IDX directory (no flips: digits, letters)
DATASETS.register("cifar10")(DatasetKind(load_cifar10, True, _tiny_cifar(
    [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10)))
DATASETS.register("cifar100")(DatasetKind(load_cifar100, True, _tiny_cifar(["train", "test"], b"fine_labels", 100, n=10)))
DATASETS.register("npz")(DatasetKind(load_npz, False, _tiny_npz))  # your own arrays (no flips: their meaning is unknown)
DATASETS.register("imagefolder")(DatasetKind(load_imagefolder, False, _tiny_imagefolder,  # one folder per class
                                             index=index_imagefolder))


def dataset_kind(name: str) -> DatasetKind:
    """The registered dataset ``name``; an unknown one lists the available ones."""
    try:
        return DATASETS.get(name)
    except KeyError as e:
        raise DatasetError(f"data.dataset: {e.args[0]}") from None


def default_root(dataset: str) -> str:
    """Default directory of ``dataset``: ``$NAS_KD_DATA`` if set, else its Debian install path."""
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    kind = dataset_kind(dataset)
    if kind.default_dir is None:
        raise DatasetError(f"dataset {dataset!r} has no default directory: set data.root or ${DATA_ENV}")
    return kind.default_dir
