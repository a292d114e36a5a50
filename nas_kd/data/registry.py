"""The dataset registry (:data:`DATASETS`): each name a :class:`DatasetKind` (how to read it, whether flips keep
its labels, where Debian installs it)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
)
from nas_kd.registry import Registry


@dataclass(frozen=True)
class DatasetKind:
    """How to read one kind of dataset: ``load(root)`` gives ``((x_train, y_train), (x_test, y_test))`` as
    uint8 NCHW images and int64 labels; ``flip`` says whether horizontal flips keep labels valid;
    ``index(root)``, for datasets of files, lists them without decoding, so one larger than memory streams."""

    load: Callable[[str | Path], tuple]
    flip: bool
    default_dir: str | None = None
    index: Callable[[str | Path], FileIndex] | None = None


# Horizontal flips keep the label for clothes and natural images, not for digits.


DATASETS: Registry = Registry("dataset")
DATASETS.register("fashion-mnist")(DatasetKind(load_idx, True, FASHION_MNIST_DIR))
DATASETS.register("mnist")(DatasetKind(load_idx, False, "/usr/share/datasets/mnist"))
DATASETS.register("idx")(DatasetKind(load_idx, False))  # any IDX directory (no flips: digits, letters)
DATASETS.register("cifar10")(DatasetKind(load_cifar10, True))
DATASETS.register("cifar100")(DatasetKind(load_cifar100, True))
DATASETS.register("npz")(DatasetKind(load_npz, False))  # your own arrays (no flips: their meaning is unknown)
DATASETS.register("imagefolder")(DatasetKind(load_imagefolder, False, index=index_imagefolder))  # one folder per class


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
