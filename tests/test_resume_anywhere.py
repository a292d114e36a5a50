"""``nas-kd run`` survives a kill at any moment: killed with SIGKILL inside each stage (right after the stage's
first mid-epoch checkpoint, or its first scored candidate; a kill at every file write is
``tests/test_crash_anywhere.py``) and run again with the same command, it ends with
an uninterrupted run's figures; SIGTERM stops it after the current step with a checkpoint and a line that
says how to continue. To keep the suite short the stops come in one chain (each run of the command stopped
inside the next stage); any stage that resumed wrongly would show in the final figures."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ["data.limit_train=256", "data.val_size=64", "data.limit_test=128", "data.batch_size=64", "train.epochs=1",
            "train.checkpoint_every_steps=1", "teacher.checkpoint=null", 'teacher.kwargs={"widths": [8, 8, 8, 8]}',
            "pipeline.supernet_checkpoint=null", "supernet.bn_batches=2", "search.trials=3", "search.probe_size=16",
            "search.bn_batches=2", "search.budget_mflops=20", "search.strategy={name: evolution, population: 2}",
            "pipeline.finetune_epochs=1"]
FIGURES = ("student_test_acc", "student_mflops", "student_params", "teacher_test_acc", "teacher_mflops",
           "teacher_params", "accuracy_gap_points", "student_distill")


def nas_kd_run(out: Path, root: str, kill: tuple[str, str] | None = None) -> subprocess.CompletedProcess:
    args = ["run", "--recipe", "recipes/quickstart.yaml"]
    for s in (f"data.root={root}", f"run.out_dir={out}", *SETTINGS):
        args += ["--set", s]
    head = [sys.executable, "tests/kill_worker.py", *kill] if kill else [sys.executable, "-m", "nas_kd.cli"]
    return subprocess.run([*head, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def figures(out: Path) -> dict:
    base = out / "quickstart"
    result = json.loads((base / "pipeline.json").read_text())
    return {**{k: result[k] for k in FIGURES}, "supernet": {k: result["supernet"][k] for k in ("max_acc", "min_acc")},
            "search": {k: result["search"][k] for k in ("budget_mflops", "scored")},
            "best_arch": {k: v for k, v in json.loads((base / "search" / "best_arch.json").read_text()).items()
                          if k not in ("command", "git_commit", "wall_seconds")}}  # the pick, not its provenance


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("straight")
    done = nas_kd_run(out, synthetic_root)
    assert done.returncode == 0, done.stderr
    return figures(out)


# one run of the same command after another, each interrupted inside a stage; then one that finishes
CHAIN = [("teacher", "KILL", "teacher/checkpoints/last.pt"), ("supernet", "KILL", "supernet/checkpoints/last.pt"),
         ("supernet", "TERM", "supernet/checkpoints/last.pt"), ("search", "KILL", "search"),
         ("finetune", "KILL", "student/finetune/checkpoints/last.pt")]


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, synthetic_root):
    """The same ``nas-kd run`` command run again and again, stopped inside each stage in turn (twice inside the
    supernet: SIGKILL, then SIGTERM after the resumed run's next step), then to the end: what each stop left."""
    out, seen = tmp_path_factory.mktemp("interrupted"), {}
    base = out / "quickstart"
    for stage, sig, partial in CHAIN:
        stopped = nas_kd_run(out, synthetic_root, kill=(stage, sig))
        journal = sorted((base / "search").glob("scored-*.jsonl"))
        seen[(stage, sig)] = {"returncode": stopped.returncode, "stderr": stopped.stderr,
                              "student_done": (base / "student" / "arch.json").exists(),
                              "partial": (base / partial).exists(), "finished": (base / "pipeline.json").exists(),
                              "scored": len(journal[0].read_text().splitlines()) if journal else 0}
    done = nas_kd_run(out, synthetic_root)
    assert done.returncode == 0, done.stderr
    (journal,) = (base / "search").glob("scored-*.jsonl")
    return seen, figures(out), len(journal.read_text().splitlines())


@pytest.mark.parametrize("stage", ["teacher", "supernet", "search", "finetune"])
def test_killed_inside_a_stage_the_same_command_ends_with_the_uninterrupted_figures(stage, interrupted, uninterrupted):
    seen, final, scored = interrupted
    kill = seen[(stage, "KILL")]
    assert kill["returncode"] == -9, kill["stderr"]  # SIGKILL: no clean-up ran
    assert kill["partial"] and not kill["finished"]  # killed inside the stage, after its first checkpoint
    assert not kill["student_done"]  # a student directory without its arch.json is redone, never trusted
    if stage == "search":
        assert kill["scored"] == 1  # killed after its first scored candidate ...
        assert scored == uninterrupted["search"]["scored"]  # ... which was not scored again
    assert final == uninterrupted


def test_sigterm_stops_after_the_step_with_a_checkpoint_and_says_how_to_continue(interrupted, uninterrupted):
    seen, final, _ = interrupted
    term = seen[("supernet", "TERM")]
    assert term["returncode"] == 130 and term["partial"] and not term["finished"]
    last = term["stderr"].strip().splitlines()[-1]
    assert last.startswith("nas-kd run: stopped by SIGTERM after epoch 1 step 2") and \
        last.endswith("run the same command again to continue")
    assert final == uninterrupted
