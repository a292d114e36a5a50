"""Shared fixtures: the real Fashion-MNIST directory and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nas_kd.data import DATA_ENV, FASHION_MNIST_DIR

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist_root() -> str:
    """The real Fashion-MNIST IDX directory; the README's test command installs it."""
    root = os.environ.get(DATA_ENV) or FASHION_MNIST_DIR
    if not (Path(root) / "train-images-idx3-ubyte.gz").exists() and not (Path(root) / "train-images-idx3-ubyte").exists():
        pytest.fail(f"Fashion-MNIST not found in {root}: run the README's test command (it installs the data) "
                    f"or set ${DATA_ENV}")
    return root
