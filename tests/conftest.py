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


def _pg_bin(tool: str) -> str | None:
    import glob
    import shutil

    return shutil.which(tool) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))[::-1]), None)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A throwaway PostgreSQL server for this test session (the OS package's initdb / pg_ctl; a Unix socket in a temp
    directory, trust authentication), as an SQLAlchemy URL; skipped, saying why, where it cannot be started."""
    import subprocess

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh installs the OS package as root)")
    pytest.importorskip("psycopg2", reason="psycopg2 missing: pip install -e '.[postgres]'")
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="nas_kd_pg_"))  # outside pytest's private tree: the server's user reads it
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    run_as: list[str] = []
    if os.getuid() == 0:  # the server refuses to run as root: run it as the package's user
        run_as = ["runuser", "-u", "postgres", "--"]
        for d in (base, sock):
            shutil.chown(d, "postgres")
    done = subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "nas", "--no-sync"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"initdb failed: {done.stderr.strip()[:200]}")
    port = str(20000 + os.getpid() % 20000)
    opts = f"-p {port} -k {sock} -c listen_addresses='' -c fsync=off"
    done = subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w", "start"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"the PostgreSQL server did not start: {done.stderr.strip()[:200]}")
    try:
        yield f"postgresql+psycopg2://nas@/{{db}}?host={sock}&port={port}"
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def storage(request, tmp_path):
    """Shared storage for searches and job queues: SQLite in the test's directory, then a PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    import psycopg2

    url = request.getfixturevalue("postgres_url")
    name = f"t{abs(hash(request.node.nodeid)) % 10**9}"  # a fresh database per test
    host, port = url.split("host=")[1].split("&port=")
    con = psycopg2.connect(dbname="postgres", user="nas", host=host, port=port)
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {name}")
        cur.execute(f"CREATE DATABASE {name}")
    con.close()
    return url.format(db=name)
