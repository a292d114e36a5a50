"""``nas-kd run`` killed at every file write (``nas_kd.crash``: the N-th write ends the process as ``kill -9`` would,
before the write is visible, an append left torn) and run again with the same command ends with the figures and
the student of an uninterrupted run.

Every write point is one case. To stay inside the suite's time the suite runs three (an appended metrics line left
torn, the fine-tune's final.json, the student's arch.json: the last write of each kind); ``NAS_KD_CRASH_ALL=1`` runs
every one (31 for this run): ``NAS_KD_CRASH_ALL=1 .venv/bin/python -m pytest tests/test_crash_anywhere.py``."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["data.limit_train=128", "data.val_size=32", "data.limit_test=64", "data.batch_size=64", "train.epochs=1",
            "train.checkpoint_every_steps=1", "teacher.checkpoint=null", 'teacher.kwargs={"widths": [8, 8, 8, 8]}',
            "pipeline.supernet_checkpoint=null", "supernet.bn_batches=1", "search.trials=2", "search.probe_size=16",
            "search.bn_batches=1", "search.budget_mflops=20", "search.strategy={name: evolution, population: 2}",
            "pipeline.finetune_epochs=1", "supernet.eval_random_archs=0"]
FIGURES = ("student_test_acc", "student_mflops", "student_params", "teacher_test_acc", "accuracy_gap_points")


def nas_kd_run(out: Path, root: str, **env: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "nas_kd.cli", "run", "--recipe", "recipes/quickstart.yaml"]
    for s in (f"data.root={root}", f"run.out_dir={out}", *SETTINGS):
        args += ["--set", s]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, **env})


def outcome(out: Path) -> dict:
    base = out / "quickstart"
    result = json.loads((base / "pipeline.json").read_text())
    student = json.loads((base / "student" / "arch.json").read_text())
    return {**{k: result[k] for k in FIGURES}, "arch": student["arch"],
            "weights": (base / "student" / "weights.pt").read_bytes() == (base / "student" / "finetune" / "student"
                                                                            / "weights.pt").read_bytes()}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, synthetic_root):
    """The uninterrupted run, and the write points it passes (``N what``)."""
    out = tmp_path_factory.mktemp("straight")
    log = out / "points.log"
    done = nas_kd_run(out, synthetic_root, NAS_KD_CRASH_LOG=str(log))
    assert done.returncode == 0, done.stderr
    return outcome(out), log.read_text().splitlines()


SAMPLE = ("metrics.jsonl", "final.json", "arch.json")


def chosen(points: list[str]) -> list[int]:
    """Every point with NAS_KD_CRASH_ALL; else, for each kind of file in ``SAMPLE``, its last write (the fine-tune's
    last metrics line and final.json, the student's arch.json)."""
    if os.environ.get("NAS_KD_CRASH_ALL"):
        return list(range(1, len(points) + 1))
    last: dict[str, int] = {}
    for line in points:
        n, what = line.split(" ", 1)
        kind = next((k for k in SAMPLE if Path(what).name.startswith(k)), None)
        if kind is not None:
            last[kind] = int(n)
    assert set(last) == set(SAMPLE), last  # every kind was written
    return sorted(last.values())


def test_killed_at_a_write_the_same_command_ends_as_an_uninterrupted_run(straight, tmp_path, synthetic_root):
    figures, points = straight
    assert len(points) > 20  # the run passed its write points (checkpoints, records, configs, metrics, ...)
    for n in chosen(points):
        out = tmp_path / f"at{n}"
        killed = nas_kd_run(out, synthetic_root, NAS_KD_CRASH_AT=str(n))
        assert killed.returncode == 137, (n, points[n - 1], killed.stderr[-2000:])
        again = nas_kd_run(out, synthetic_root)
        assert again.returncode == 0, (n, points[n - 1], again.stderr[-2000:])
        assert outcome(out) == figures, (n, points[n - 1])
