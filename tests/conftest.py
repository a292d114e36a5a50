"""Shared fixtures: the real Fashion-MNIST directory and small helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nas_kd.data import DATA_ENV, FASHION_MNIST_DIR
from nas_kd.data.formats import write_idx
from nas_kd.search.strategies import SearchInputs, build_strategy

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def fmnist_root() -> str:
    """The real Fashion-MNIST IDX directory; the README's test command installs it."""
    root = os.environ.get(DATA_ENV) or FASHION_MNIST_DIR
    if not (Path(root) / "train-images-idx3-ubyte.gz").exists() and not (Path(root) / "train-images-idx3-ubyte").exists():
        pytest.fail(f"Fashion-MNIST not found in {root}: run the README's test command (it installs the data) "
                    f"or set ${DATA_ENV}")
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> str:
    """A directory of tiny synthetic IDX files: behaviour tests that make no claim about learning use it."""
    return write_idx(tmp_path_factory.mktemp("synthetic_idx"))


@pytest.fixture(scope="session")
def dna_tables(tmp_path_factory) -> str:
    """Blockwise ranking tables of the resnet space (1 x 28 x 28, 10 classes) in the format of ``nas-kd dna-rank``,
    with seeded made-up candidate scores: for what reads the tables (dna evaluators, dna-exhaustive)."""
    import json
    import random

    import search_spaces

    space, rng = search_spaces.get("resnet"), random.Random(0)
    stages = [{"stage": i, "candidates": [{"cand": c, "rel_l1": rng.uniform(0.5, 1.5), "mse": rng.uniform(0.1, 2.0)}
                                          for c in space.stage_candidates(i)]}
              for i in range(1, len(space.stages) + 1)]
    path = tmp_path_factory.mktemp("dna") / "tables.json"
    path.write_text(json.dumps({"space": space.name, "input_shape": list(space.input_shape),
                                "num_classes": space.num_classes, "scores": ["rel_l1", "mse"], "stages": stages}))
    return str(path)


TEACHER_KW = {"widths": [8, 16, 16, 16]}  # the distillation tests' small reference teacher


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    """Weights of a small reference teacher (``TEACHER_KW``), seeded."""
    from nas_kd.checkpoint import save_checkpoint
    from nas_kd.models.resnet_teacher import ResNetTeacher

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint({"model": ResNetTeacher(**TEACHER_KW).state_dict()}, path)
    return str(path)



def run_strategy(name: str, objective, trials: int, options: dict | None = None, **inputs):
    """Strategy ``name`` built with ``options`` (checked, as ``search.strategy``), run on ``objective``."""
    return build_strategy({"name": name, **(options or {})}).search(SearchInputs(objective, trials, **inputs))
