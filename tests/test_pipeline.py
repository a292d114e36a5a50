import json

from nas_kd.cli import main


def test_run_pipeline_end_to_end_then_resume_skips_done_stages(tmp_path, fmnist_root, capsys):
    sets = [f"data.root={fmnist_root}", "data.limit_train=512", "data.val_size=128", "data.limit_test=200",
            "data.batch_size=64", "train.epochs=1", "supernet.bn_batches=2", "search.trials=2",
            "search.probe_size=64", "search.bn_batches=2", "search.population=2", f"run.out_dir={tmp_path}"]
    args = ["run", "--recipe", "recipes/quickstart.yaml"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    base = tmp_path / "quickstart"
    first = json.loads((base / "pipeline.json").read_text())
    assert first["student_mflops"] <= 36.17 and 0 < first["student_test_acc"] <= 1
    assert (base / "student" / "weights.pt").exists() and (base / "search" / "pareto.png").exists()
    mtime = (base / "supernet" / "final.json").stat().st_mtime
    assert main(args) == 0  # everything is done: nothing is retrained
    assert (base / "supernet" / "final.json").stat().st_mtime == mtime
    second = json.loads((base / "pipeline.json").read_text())
    assert second["student_test_acc"] == first["student_test_acc"]
    assert second["stage_seconds_this_invocation"]["supernet"] < 5
