"""Data: file formats (:mod:`.formats`), the dataset registry (:mod:`.registry`), seeded normalised splits
(:mod:`.splits`) and batching (:mod:`.batching`).

Datasets here are small, so they are held as tensors in memory (an image folder larger than
``data.memory_limit_mb`` streams from disk). Every random choice (shuffle, augmentation) is a pure
function of ``(seed, epoch, step)``, which makes a run resumable at any step and repeatable on one machine.
"""
from nas_kd.data.batching import BatchIterator, augment, calibration_batches, step_seed
from nas_kd.data.formats import (
    DATA_ENV,
    FASHION_MNIST_DIR,
    DatasetError,
    LazyImages,
    load_cifar10,
    load_cifar100,
    load_idx,
    load_imagefolder,
    load_npz,
    read_idx,
)
from nas_kd.data.registry import DATASETS, DatasetKind
from nas_kd.data.splits import DataBundle, Split, from_tensors, load_data, load_dataset
from nas_kd.registry import import_modules

import_modules(__name__, __path__)  # a module that registers a dataset is picked up by being here

__all__ = ["BatchIterator", "DATA_ENV", "DATASETS", "DataBundle", "DatasetError", "DatasetKind", "FASHION_MNIST_DIR",
           "LazyImages", "Split", "augment", "calibration_batches", "from_tensors", "load_cifar10", "load_cifar100", "load_data",
           "load_dataset", "load_idx", "load_imagefolder", "load_npz", "read_idx", "step_seed"]
