import json

import pytest
import torch

import search_spaces
from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.checkpoint import save_supernet
from nas_kd.supernet import Supernet

TINY = ["data.limit_train=256", "data.val_size=64", "data.limit_test=128", "data.batch_size=64", "train.epochs=1",
        "supernet.bn_batches=2", "search.trials=2", "search.probe_size=16", "search.bn_batches=2",
        "search.strategy={name: evolution, population: 2}", "pipeline.finetune_epochs=1",
        "pipeline.teacher_check=false"]  # the reference teacher on synthetic images: near chance, and that is fine here


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
    finetuned = json.loads((base / "student" / "finetune" / "final.json").read_text())
    assert first["student_test_acc"] == finetuned["test_acc"] and first["teacher_latency_ms_batch1_cpu"] > 0
    assert first["student_size_bytes"] > 0 and not first["supernet"]["reused"]
    shown = capsys.readouterr()
    assert "test accuracy (%)" in shown.out  # the summary a person reads, with what was chosen, a line each
    assert "distilled: CE x 0.3 + kd x 0.7" in shown.out and "MFLOPs used" in shown.out
    assert "\r" not in shown.out + shown.err  # not a terminal: no progress-bar redraws, only per-epoch lines
    assert (base / "student" / "weights.pt").exists() and (base / "search" / "pareto.png").exists()
    mtimes = {p: (base / p).stat().st_mtime for p in ("supernet/final.json", "search/search.json", "student/weights.pt")}
    assert main(args) == 0  # everything is done: nothing is redone
    assert all((base / p).stat().st_mtime == m for p, m in mtimes.items())
    assert json.loads((base / "pipeline.json").read_text())["student_test_acc"] == first["student_test_acc"]
    capsys.readouterr()
    for changed, said in (("search.trials=3", "search.trials: 2 -> 3"), ("train.lr=0.05", "train.lr: 0.1 -> 0.05"),
                          ("pipeline.finetune_epochs=3", "pipeline.finetune_epochs: 1 -> 3")):
        assert main([*args, "--set", changed]) == 2  # another recipe on a finished run: refused, naming the key
        err = capsys.readouterr().err
        assert said in err and "--set run.name=NAME" in err and len(err.strip().splitlines()) == 1
    assert all((base / p).stat().st_mtime == m for p, m in mtimes.items())  # and nothing reused under it


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


TYPOS = {  # key -> (override, what the one line must say after the file name)
    "distill": ("distill=[{name: kd, weight: 0.7, temprature: 4}]",
                "distill[0] (kd): distiller 'kd' has no option 'temprature' (did you mean 'temperature'?)"),
    "supernet.mode.distill": ("supernet.mode.distill=[{name: alpha_dv}]",
                              "supernet.mode (sandwich): distill[0] (alpha_dv): unknown distiller 'alpha_dv'. Did you "
                              "mean 'alpha_div'?"),
    "search.evaluator": ("search.evaluator={name: rdm, proj_dm: 64}",
                         "search.evaluator: evaluator 'rdm' has no option 'proj_dm' (did you mean 'proj_dim'?)"),
    "search.strategy": ("search.strategy={name: evolution, populaton: 4}",
                        "search.strategy (evolution): strategy 'evolution' has no option 'populaton' "
                        "(did you mean 'population'?)"),
    "teacher.preprocess": ("teacher.preprocess=scaled", "teacher.preprocess: expected data (the data's normalisation), "
                           "none (images in [0, 1]) or {mean: [...], std: [...]} (one per channel, std > 0), got 'scaled'"),
    "train.optimizer": ("train.optimizer=adamx", "train.optimizer: unknown train.optimizer 'adamx'. Did you mean 'adamw'?"),
    "data.dataset": ("data.dataset=fashion_mnist", "data.dataset: unknown dataset 'fashion_mnist'. Did you mean "
                                                   "'fashion-mnist'?"),
    "supernet.mode": ("supernet.mode=blockwize", "supernet.mode: unknown supernet.mode 'blockwize'. Did you mean "
                                                 "'blockwise'?"),
    "supernet.mode.soft_labels": ("supernet.mode.soft_labels=inplase", "supernet.mode (sandwich).soft_labels: 'inplase' "
                                  "is not one of inplace, teacher, mix, none (did you mean 'inplace'?)"),
}


@pytest.mark.parametrize("key", sorted(TYPOS))
def test_a_typo_stops_nas_kd_run_before_any_work(key, tmp_path, synthetic_root, capsys):
    override, message = TYPOS[key]
    assert main(run_args(tmp_path, synthetic_root, "pipeline.supernet_checkpoint=null", override)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas-kd run: error: recipes/quickstart.yaml: {message}") and "\n" not in err
    assert not (tmp_path / "quickstart").exists()


@pytest.mark.parametrize("override, message", [
    ("search.budget_mflops=1.0", "search.budget_mflops: budget 1.000 MFLOPs is below the smallest resnet arch "
                                 "(2.847 MFLOPs; the largest has 90.425)"),
    ("pipeline.budget_fraction_of_teacher=0.01", "pipeline.budget_fraction_of_teacher 0.01: budget 0.52"),
    ("teacher.stages=[stem, stage1, stage2, stage3, stag4]", "teacher.stages: the teacher has no module 'stag4'"),
    ("teacher.checkpoint=results/teachr_fmnist.pt", "teacher.checkpoint: results/teachr_fmnist.pt not found (to train "
                                                    "the teacher from the labels first, run the same command with "
                                                    "--set teacher.checkpoint=null)"),
])
def test_facts_known_before_training_stop_nas_kd_run_before_it_trains(override, message, tmp_path, synthetic_root,
                                                                       capsys):
    """With a supernet still to train, an impossible budget or a wrong teacher stage is found first."""
    assert main(run_args(tmp_path, synthetic_root, "pipeline.supernet_checkpoint=null", override)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"nas-kd run: error: {message}") and "\n" not in err
    assert not (tmp_path / "quickstart").exists()


BLOCKWISE = ["supernet.mode={name: blockwise, num_random: 0}", "pipeline.supernet_checkpoint=null",
             "search.evaluator=dna", "search.strategy=dna-exhaustive",
             "rankcorr.probe_size=16"]


def test_blockwise_mode_runs_the_whole_pipeline(tmp_path, synthetic_root, capsys):
    """DNA through nas-kd run: blockwise supernet -> stage rankings -> exact search on them -> the student
    trained from its own initialisation with the recipe's distillation."""
    assert main(run_args(tmp_path, synthetic_root, *BLOCKWISE)) == 0
    base = tmp_path / "quickstart"
    result = json.loads((base / "pipeline.json").read_text())
    assert json.loads((base / "supernet" / "final.json").read_text())["mode"] == "blockwise"
    assert (base / "dna_tables.json").exists() and result["search"]["evaluator"] == "dna"
    assert result["student_mflops"] <= 0.1 * result["teacher_mflops"] + 1e-9
    finetuned = json.loads((base / "student" / "finetune" / "final.json").read_text())
    assert result["student_test_acc"] == finetuned["test_acc"] and finetuned["distill"][0]["name"] == "kd"
    searched = json.loads((base / "search" / "best_arch.json").read_text())["arch"]
    assert json.loads((base / "student" / "arch.json").read_text())["arch"] == searched
    capsys.readouterr()
    assert main(run_args(tmp_path, synthetic_root, *BLOCKWISE[:-4], "search.evaluator=rdm")) == 2
    assert "search.evaluator: rdm score(s) subnets with a weight-sharing supernet's weights" in capsys.readouterr().err


@pytest.fixture(scope="module")
def quick_table(tmp_path_factory):
    """A roughly timed batch-1 latency table of the resnet space (for budgets only, not for figures)."""
    from nas_kd.latency import build_table
    from nas_kd.provenance import write_result

    path = tmp_path_factory.mktemp("table") / "table.json"
    write_result(path, build_table(search_spaces.get("resnet"), repeats=1, warmup=1, min_seconds=0, calibration_archs=0,
                                   show_progress=False), 0.0, {"command": "test", "git_commit": "test"})
    return str(path)


def test_a_latency_fraction_of_the_teacher_sets_the_budget_or_stops_before_training(tmp_path, synthetic_root, capsys,
                                                                                    quick_table):
    assert main(run_args(tmp_path, synthetic_root, "pipeline.latency_fraction_of_teacher=0.000001",
                         f"search.latency_table={quick_table}")) == 2
    assert "raise the fraction" in capsys.readouterr().err
    assert not (tmp_path / "quickstart" / "supernet").exists()  # nothing was trained
    assert main(run_args(tmp_path, synthetic_root, "search.budget_ms=0.00001", f"search.latency_table={quick_table}")) == 2
    assert "search.budget_ms 1e-05: below the fastest resnet arch" in capsys.readouterr().err  # a budget in ms too
    assert not (tmp_path / "quickstart" / "supernet").exists()
    assert main(run_args(tmp_path, synthetic_root, "pipeline.latency_fraction_of_teacher=0.5",
                         "search.budget_ms=3")) == 2
    assert "both set a latency budget" in capsys.readouterr().err


def test_the_summary_says_when_the_student_is_not_faster():
    from nas_kd.summary import print_summary

    r = {f"{who}_{k}": v for who in ("teacher", "student") for k, v in
         {"test_acc": 0.9, "mflops": 1.0, "params": 10, "size_bytes": 2048}.items()}
    r |= {"teacher_latency_ms_batch1_cpu": 0.65, "student_latency_ms_batch1_cpu": 0.80, "student_faster_than_teacher": False,
          "student_flops_fraction_of_teacher": 0.25, "accuracy_gap_points": 1.0, "student_dir": "s", "pareto_plot": "p"}
    import contextlib
    import io

    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        print_summary(r)
    assert "NOT faster than the teacher at batch 1 (0.80 ms vs 0.65 ms)" in shown.getvalue()
    assert "latency_fraction_of_teacher" in shown.getvalue()
    shown = io.StringIO()
    with contextlib.redirect_stdout(shown):
        print_summary(r | {"student_faster_than_teacher": True})
    assert "NOT faster" not in shown.getvalue()


def test_the_latency_budget_is_the_fraction_of_the_teacher_measured_here(tmp_path, synthetic_root, quick_table,
                                                                        monkeypatch):
    from nas_kd import latency, pipeline
    from nas_kd.plans import search_plan
    from nas_kd.recipes import job_of

    r = load_recipe("recipes/quickstart.yaml", [f"data.root={synthetic_root}", *TINY,
                                                "pipeline.latency_fraction_of_teacher=0.9",
                                                f"search.latency_table={quick_table}"])
    monkeypatch.setattr(latency, "model_latency_ms", lambda *a, **k: 100.0)  # the teacher, timed here
    job = job_of(r)
    data = job.data
    teacher = torch.nn.Conv2d(1, 1, 1)  # timed by the patched clock
    out = pipeline._latency_budget(job, search_plan(r.search), 0.9, teacher,
                                   search_spaces.get("resnet", data.input_shape, data.num_classes), tmp_path)
    assert out.cfg.budget_ms == pytest.approx(90.0) and out.cfg.latency_table == quick_table


def test_pipeline_quantize_adds_the_int8_student(tmp_path, synthetic_root, monkeypatch):
    from nas_kd.train import quantize

    calls = []

    def fake(job, student_dir, out, **kw):
        calls.append((str(student_dir), kw["seeds"], kw["qat_epochs"], kw["engines"]))
        row = {"acc_mean": 0.5, "latency_ms_b1": [1.0, 1.1], "latency_ms_b32": [2.0, 2.1], "int8_convs": [3, 4],
               "speedup_vs_own_fp32_b1": [1.0, 1.0], "speedup_vs_own_fp32_b32": [1.0, 1.0], "size_kb": 10.0,
               "file": "x.onnx"}
        return {"rows": {"openvino/fp32": row, "openvino/qat_kd_int8": row},
                "shipped": {"row": "openvino/qat_kd_int8", "rule": "r"}}

    monkeypatch.setattr(quantize, "quantize_student", fake)
    ckpt = _pretrained(tmp_path, "resnet", "results/teacher_fmnist.pt")
    args = run_args(tmp_path, synthetic_root, f"pipeline.supernet_checkpoint={ckpt}", "pipeline.quantize=true",
                    "pipeline.quantize_epochs=2")
    assert main(args) == 0
    result = json.loads((tmp_path / "quickstart" / "pipeline.json").read_text())
    assert calls == [(str(tmp_path / "quickstart" / "student"), 1, 2, None)]  # search.runtime torch: every engine
    assert set(result["int8"]) == {"shipped", "openvino/fp32", "openvino/qat_kd_int8"}
    assert main(args) == 0 and len(calls) == 1  # done once: a re-run reuses it


def test_pipeline_baselines_prune_the_teacher_beside_the_student_and_a_changed_teacher_file_is_refused(
        tmp_path, synthetic_root, capsys):
    import shutil

    teacher = tmp_path / "teacher.pt"
    shutil.copyfile("results/teacher_fmnist.pt", teacher)
    ckpt = _pretrained(tmp_path, "resnet", str(teacher))
    args = run_args(tmp_path, synthetic_root, f"pipeline.supernet_checkpoint={ckpt}", "pipeline.baselines=[l1]",
                    f"teacher.checkpoint={teacher}")
    assert main([*args, "--set", "pipeline.baselines=[{name: l1, nope: 1}]"]) == 2  # refused before any training
    assert "pipeline.baselines[0]" in capsys.readouterr().err and not (tmp_path / "quickstart" / "supernet").exists()
    assert main(args) == 0
    result = json.loads((tmp_path / "quickstart" / "pipeline.json").read_text())
    pruned = result["baselines"]["l1"]
    assert pruned["mflops"] <= result["student_mflops"] and 0 < pruned["ratio"] < 1
    assert "the teacher pruned by l1" in capsys.readouterr().out
    record = json.loads((tmp_path / "quickstart" / "baselines" / "l1" / "prune.json").read_text())
    assert record["finetune_epochs"] == 1 and record["budget_mflops"] == result["student_mflops"]
    # the run fingerprinted what its paths point at: the same files reuse it, other contents are refused
    inputs = json.loads((tmp_path / "quickstart" / "inputs.json").read_text())
    assert {"teacher.checkpoint", "pipeline.supernet_checkpoint", "data.train", "data.val"} <= set(inputs)
    assert main(args) == 0
    state = torch.load(teacher, weights_only=True)
    weights = state["model"] if "model" in state else state
    weights[next(k for k in weights if k.endswith("weight"))].mul_(1.01)
    torch.save(state, teacher)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "teacher.checkpoint changed since this run started" in err and "run.name" in err


HOLD = "import sys, time; from nas_kd.locks import lock_dir; lock_dir(sys.argv[1]); print('held', flush=True); time.sleep(60)"


def _holder(path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_run_directory_in_use_is_refused_naming_its_holder_and_a_dead_holder_is_taken_over(tmp_path):
    from nas_kd.errors import RunDirError
    from nas_kd.locks import dir_locked, lock_dir, unlock_dir

    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunDirError, match=rf"in use by process {proc.pid} \(`"):
            lock_dir(tmp_path / "run")
    finally:
        proc.kill()
        proc.wait()
    with dir_locked(tmp_path / "run"):  # the holder died: its lock went with it
        with dir_locked(tmp_path / "run"):  # re-entrant within a process
            pass
    lock_dir(tmp_path / "run")
    unlock_dir(tmp_path / "run")
    other = _holder(tmp_path / "run")  # released with the last unlock: another process takes it
    other.kill()
    other.wait()


def test_nas_kd_run_on_a_directory_another_command_holds_stops_before_training(tmp_path, synthetic_root, capsys):
    proc = _holder(tmp_path / "quickstart")
    try:
        assert main(run_args(tmp_path, synthetic_root, "pipeline.supernet_checkpoint=null")) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err
    assert f"in use by process {proc.pid}" in err and "run the same command again" in err
    assert not (tmp_path / "quickstart" / "supernet").exists()  # nothing was trained


def test_a_commands_out_directory_is_held_while_it_writes(tmp_path):
    """``--out`` commands (quantize, synthesize, specialists) hold their directory: a second is refused, naming the
    first; nothing is made by the refused one."""
    from nas_kd.datafree import synthesize
    from nas_kd.errors import RunDirError
    from nas_kd.locks import holding
    from nas_kd.specialists import train_specialists
    from nas_kd.train.quantize import quantize_student

    assert all(hasattr(f, "__wrapped__") for f in (synthesize, train_specialists, quantize_student))
    calls = []
    write = holding("out")(lambda job, out: calls.append(out))
    proc = _holder(tmp_path / "q")
    try:
        with pytest.raises(RunDirError, match=f"in use by process {proc.pid}"):
            write(None, out=tmp_path / "q")
    finally:
        proc.kill()
        proc.wait()
    assert calls == [] and not (tmp_path / "q").exists()
    write(None, tmp_path / "q")
    assert calls == [tmp_path / "q"]


def test_the_whole_pipeline_runs_from_synthetic_images_and_tests_on_the_real_split(tmp_path, synthetic_root, capsys):
    """Data-free: ``nas-kd synthesize`` from the teacher alone, then ``nas-kd run`` with ``data.synthetic``: the
    supernet, the search's probe batch, BatchNorm recalibration and the distillation all see synthetic inputs; only
    the test split is real."""
    data = [f"data.root={synthetic_root}", "data.limit_train=256", "data.val_size=64", "data.limit_test=128"]
    assert main(["synthesize", "--recipe", "recipes/quickstart.yaml", "--out", str(tmp_path / "syn"), "--num-images",
                 "80", "--batch-size", "40", "--method", "{name: impressions, iterations: 2}",
                 *sum([["--set", s] for s in data], [])]) == 0
    args = run_args(tmp_path, synthetic_root, "pipeline.supernet_checkpoint=null",
                    f"data.synthetic={tmp_path / 'syn' / 'synthetic.npz'}")
    assert main(args) == 0
    base = tmp_path / "quickstart"
    trained = json.loads((base / "student" / "finetune" / "final.json").read_text())
    assert trained["train_images"] == 72 * 1  # the synthetic images less their validating tenth, one epoch
    assert json.loads((base / "pipeline.json").read_text())["student_test_acc"] == trained["test_acc"]
