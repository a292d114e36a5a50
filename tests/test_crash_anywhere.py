"""Long commands killed at every file write (``nas_kd.crash``: the N-th write ends the process as ``kill -9`` would,
before the write is visible, an append left torn) and run again the same way end with the figures and the weights
of an uninterrupted run: ``nas-kd run`` (every stage), ``nas-kd distill``, ``nas-kd prune`` (cut, fine-tune, save),
``nas-kd synthesize`` (the generator: its checkpointed state and kept batches), ``nas-kd export`` (recalibrate,
fine-tune, save), ``nas-kd quantize`` (two QAT seeds and their graphs) and ``nas-kd specialists`` (two specialists,
the ensemble).

Every write point is one case. To stay inside the suite's time the suite runs a few per command (the last write of
each kind it names: an appended metrics line left torn, a final.json, the student's arch.json);
``NAS_KD_CRASH_ALL=1`` runs every one (31 for this run, 11 for this distill), and the cases of the other commands:
``NAS_KD_CRASH_ALL=1 .venv/bin/python -m pytest tests/test_crash_anywhere.py``."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ["data.limit_train=128", "data.val_size=32", "data.limit_test=64", "data.batch_size=64", "train.epochs=1",
        "train.checkpoint_every_steps=1"]
RUN = [*TINY, "teacher.checkpoint=null", 'teacher.kwargs={"widths": [8, 8, 8, 8]}', "pipeline.supernet_checkpoint=null",
       "supernet.bn_batches=1", "search.trials=2", "search.probe_size=16", "search.bn_batches=1",
       "search.budget_mflops=20", "search.strategy={name: evolution, population: 2}", "pipeline.finetune_epochs=1",
       "supernet.eval_random_archs=0"]
DISTILL = [*TINY, "train.epochs=2", "distill=[{name: kd, weight: 0.9, temperature: 4}]", "student.ce_weight=0.1"]


def digest(path: Path) -> str:
    """The weights in a checkpoint, whatever bytes the file holds."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].numpy().tobytes())
    return h.hexdigest()


def run_outcome(out: Path) -> dict:
    base = out / "quickstart"
    result = json.loads((base / "pipeline.json").read_text())
    figures = ("student_test_acc", "student_mflops", "student_params", "teacher_test_acc", "accuracy_gap_points")
    return {**{k: result[k] for k in figures}, "arch": json.loads((base / "student" / "arch.json").read_text())["arch"],
            "student": digest(base / "student" / "weights.pt")}


def distill_outcome(out: Path) -> dict:
    base = out / "d"
    final = json.loads((base / "final.json").read_text())
    return {"test_acc": final["test_acc"], "val_acc": final["val_acc"], "model": digest(base / "model.pt"),
            "student": digest(base / "student" / "weights.pt")}


def prune_outcome(out: Path) -> dict:
    base = out / "p"
    record = json.loads((base / "prune.json").read_text())
    return {k: record[k] for k in ("ratio", "mflops", "params", "cut_test_acc", "test_acc")} | {
        "weights": digest(base / "weights.pt")}


def export_outcome(out: Path) -> dict:
    base = out / "e"
    final = json.loads((base / "finetune" / "final.json").read_text())
    return {"arch": json.loads((base / "arch.json").read_text())["arch"], "test_acc": final["test_acc"],
            "student": digest(base / "weights.pt")}


def quantize_outcome(out: Path) -> dict:
    base = out / "q"
    return {f"s{s}": (json.loads((base / f"qat-s{s}" / "final.json").read_text())["test_acc"],
                      digest(base / f"qat-s{s}" / "model.pt"),
                      hashlib.sha256((base / f"qat-s{s}_int8.onnx").read_bytes()).hexdigest()) for s in (0, 1)}


def specialists_outcome(out: Path) -> dict:
    record = json.loads((out / "s" / "specialists.json").read_text())
    return {"clusters": record["clusters"], "acc": record["ensemble_test_acc"],
            "specialists": [r["val_acc"] for r in record["specialists"]], "ensemble": digest(out / "s" / "ensemble.pt")}


def synthesize_outcome(out: Path) -> dict:
    import numpy as np

    with np.load(out / "s" / "synthetic.npz") as z:
        return {"x": hashlib.sha256(z["x"].tobytes()).hexdigest(), "y": z["y"].tolist()}


TEACHER = [f"teacher.kwargs={json.dumps({'widths': [8, 16, 16, 16]})}"]  # the tests' small teacher (conftest)
COMMANDS = {  # argv after nas-kd, what the outcome is, the kinds of write the suite samples (None: only with ALL)
    "run": (["run", "--recipe", "recipes/quickstart.yaml", *sum((["--set", s] for s in RUN), [])], run_outcome,
            ("final.json", "arch.json")),  # a torn metrics line: sampled in distill, the same trainer's writer
    "distill": (["distill", "--recipe", "recipes/distill_fmnist.yaml", "--student", "resnet:min",
                 *sum((["--set", s] for s in [*DISTILL, "run.name=d"]), [])], distill_outcome,
                ("metrics.jsonl", "final.json")),
    "prune": (["prune", "--recipe", "recipes/distill_fmnist.yaml", "--pruner", "l1", "--budget-fraction", "0.3",
               "--finetune-epochs", "1", *sum((["--set", s] for s in [*DISTILL, *TEACHER, "run.name=p"]), [])],
              prune_outcome, None),
    "export": (["export", "--checkpoint", "{supernet}", "--arch", "min", "--recalibrate-batches", "1",
                "--finetune-epochs", "2", "--recipe", "recipes/quickstart.yaml",
                *sum((["--set", s] for s in [*TINY, *TEACHER, "distill=[{name: kd, weight: 0.9}]"]), [])], export_outcome,
               None),
    "quantize": (["quantize", "--recipe", "recipes/quickstart.yaml", "--student", "{student}", "--seeds", "2",
                  "--qat-epochs", "1", "--calibration-batches", "1", "--pass-seconds", "0.01", "--engine", "onnxruntime",
                  *sum((["--set", s] for s in [*TINY, *TEACHER, "data.limit_test=32"]), [])], quantize_outcome,
                 None),
    "specialists": (["specialists", "--recipe", "recipes/distill_fmnist.yaml", "--clusters", "2", "--cluster-size", "3",
                     "--epochs", "1", *sum((["--set", s] for s in [*TINY, *TEACHER]), [])], specialists_outcome, None),
    "synthesize": (["synthesize", "--recipe", "recipes/distill_fmnist.yaml", "--num-images", "12", "--batch-size", "4",
                    "--method", "{name: generator, steps: 6, student_steps: 1, batch_size: 8, checkpoint_every: 2}",
                    "--student", "resnet:min", *sum((["--set", s] for s in [*TINY, *TEACHER]), [])],
                   synthesize_outcome, None),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, teacher_ckpt) -> dict[str, str]:
    """What the commands read: the small teacher, an untrained resnet supernet, its smallest subnet exported."""
    import search_spaces
    from nas_kd.checkpoint import save_supernet
    from nas_kd.export import export_subnet, save_subnet
    from nas_kd.supernet import Supernet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("inputs")
    space = search_spaces.get("resnet")
    net = Supernet(space)
    save_supernet(net, root / "super.pt")
    save_subnet(export_subnet(net, space.min_arch()), root / "student")
    return {"teacher": teacher_ckpt, "supernet": str(root / "super.pt"), "student": str(root / "student")}


def nas_kd(command: str, out: Path, root: str, inputs: dict[str, str], **env: str) -> subprocess.CompletedProcess:
    args = [inputs.get(a[1:-1], a) if a[:1] == "{" else a for a in COMMANDS[command][0]]  # {supernet} etc.
    args += ["--set", f"data.root={root}", "--set", f"run.out_dir={out}"]
    if command not in ("run", "distill"):  # they write to --out; the tests' small teacher
        args += ["--out", str(out / command[0]), "--set", f"teacher.checkpoint={inputs['teacher']}"]
    return subprocess.run([sys.executable, "-m", "nas_kd.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})


def chosen(points: list[str], kinds: tuple[str, ...]) -> list[int]:
    """Every point with NAS_KD_CRASH_ALL; else, for each kind of file in ``kinds``, its last write."""
    if os.environ.get("NAS_KD_CRASH_ALL"):
        return list(range(1, len(points) + 1))
    last: dict[str, int] = {}
    for line in points:
        n, what = line.split(" ", 1)
        kind = next((k for k in kinds if Path(what).name.startswith(k)), None)
        if kind is not None:
            last[kind] = int(n)
    assert set(last) == set(kinds), last  # every kind was written
    return sorted(last.values())


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_killed_at_a_write_the_same_command_ends_as_an_uninterrupted_run(command, tmp_path, synthetic_root, inputs):
    outcome, kinds = COMMANDS[command][1:]
    if kinds is None and not os.environ.get("NAS_KD_CRASH_ALL"):
        pytest.skip("every write point of this command runs with NAS_KD_CRASH_ALL=1 (the suite samples run and distill)")
    log = tmp_path / "points.log"
    done = nas_kd(command, tmp_path / "straight", synthetic_root, inputs, NAS_KD_CRASH_LOG=str(log))
    assert done.returncode == 0, done.stderr
    straight, points = outcome(tmp_path / "straight"), log.read_text().splitlines()
    assert len(points) >= 5  # it passed its write points (checkpoints, records, configs, metrics, ...)
    for n in chosen(points, kinds):
        out = tmp_path / f"at{n}"
        killed = nas_kd(command, out, synthetic_root, inputs, NAS_KD_CRASH_AT=str(n))
        assert killed.returncode == 137, (n, points[n - 1], killed.stderr[-2000:])
        again = nas_kd(command, out, synthetic_root, inputs)
        assert again.returncode == 0, (n, points[n - 1], again.stderr[-2000:])
        assert outcome(out) == straight, (n, points[n - 1])
