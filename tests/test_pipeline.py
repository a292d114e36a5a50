import json

import pytest

import search_spaces
from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.checkpoint import save_supernet
from nas_kd.supernet import Supernet

TINY = ["data.limit_train=256", "data.val_size=64", "data.limit_test=128", "data.batch_size=64", "train.epochs=1",
        "supernet.bn_batches=2", "search.trials=2", "search.probe_size=16", "search.bn_batches=2",
        "search.strategy_options={population: 2}", "pipeline.finetune_epochs=1"]


def run_args(tmp_path, root, *extra):
    args = ["run", "--recipe", "recipes/quickstart.yaml"]
    for s in (f"data.root={root}", f"run.out_dir={tmp_path}", *TINY, *extra):
        args += ["--set", s]
    return args


def test_run_pipeline_end_to_end_then_resume_skips_done_stages(tmp_path, synthetic_root, capsys):
    args = run_args(tmp_path, synthetic_root, "pipeline.supernet_checkpoint=null")
    assert main(args) == 0
    base = tmp_path / "quickstart"
    first = json.loads((base / "pipeline.json").read_text())
    assert first["student_mflops"] <= 0.1 * first["teacher_mflops"] + 1e-9  # 10 % of the teacher by default
    assert 0 <= first["student_test_acc"] <= 1 and first["teacher_latency_ms_batch1_cpu"] > 0
    assert first["student_size_bytes"] > 0 and not first["supernet"]["reused"]
    shown = capsys.readouterr()
    assert "test accuracy (%)" in shown.out  # the summary a person reads
    assert "\r" not in shown.out + shown.err  # not a terminal: no progress-bar redraws, only per-epoch lines
    assert (base / "student" / "weights.pt").exists() and (base / "search" / "pareto.png").exists()
    mtimes = {p: (base / p).stat().st_mtime for p in ("supernet/final.json", "search/search.json", "student/weights.pt")}
    assert main(args) == 0  # everything is done: nothing is redone
    assert all((base / p).stat().st_mtime == m for p, m in mtimes.items())
    assert json.loads((base / "pipeline.json").read_text())["student_test_acc"] == first["student_test_acc"]


def _pretrained(tmp_path, space, teacher_checkpoint):
    ckpt = tmp_path / "pre" / "supernet.pt"
    save_supernet(Supernet(search_spaces.get(space)), ckpt, epoch=1)
    recipe = load_recipe("recipes/quickstart.yaml", [f"teacher.checkpoint={teacher_checkpoint}"]).to_dict()
    ckpt.with_suffix(".json").write_text(json.dumps({"recipe": recipe, "max_acc": 0.5}))
    return ckpt


def test_a_matching_trained_supernet_is_reused(tmp_path, synthetic_root, capsys):
    ckpt = _pretrained(tmp_path, "resnet", "results/teacher_fmnist.pt")
    assert main(run_args(tmp_path, synthetic_root, f"pipeline.supernet_checkpoint={ckpt}")) == 0
    result = json.loads((tmp_path / "quickstart" / "pipeline.json").read_text())
    assert result["supernet"]["reused"] and result["supernet"]["checkpoint"] == str(ckpt)
    assert not (tmp_path / "quickstart" / "supernet").exists()
    assert "starting from the trained supernet" in capsys.readouterr().err


@pytest.mark.parametrize("space, teacher, why", [("mbv2", "results/teacher_fmnist.pt", "space"),
                                                 ("resnet", "other/teacher.pt", "teacher.checkpoint")])
def test_a_mismatched_supernet_is_never_reused(tmp_path, synthetic_root, capsys, space, teacher, why):
    ckpt = _pretrained(tmp_path, space, teacher)
    assert main(run_args(tmp_path, synthetic_root, f"pipeline.supernet_checkpoint={ckpt}")) == 0
    result = json.loads((tmp_path / "quickstart" / "pipeline.json").read_text())
    assert not result["supernet"]["reused"] and (tmp_path / "quickstart" / "supernet" / "final.json").exists()
    err = capsys.readouterr().err
    assert f"not reusing {ckpt}" in err and why in err
