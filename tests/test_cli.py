"""Every nas-kd command once from the command line, on tiny synthetic data (claims about behaviour, not learning)."""
import json
import math
import random

import pytest
import torch

from nas_kd.checkpoint import save_checkpoint
from nas_kd.cli import main
from nas_kd.models.resnet_teacher import ResNetTeacher

TEACHER_KW = {"widths": [8, 8, 16, 16]}


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "t.pt"
    save_checkpoint({"model": ResNetTeacher(**TEACHER_KW).state_dict()}, path)
    return str(path)


def sets(root, tmp_path, teacher, *extra):
    out = []
    for s in (f"data.root={root}", "data.val_size=64", "data.limit_train=128", "data.limit_test=64",
              "data.batch_size=32", "train.epochs=1", f"teacher.kwargs={json.dumps(TEACHER_KW)}",
              f"teacher.checkpoint={teacher}", f"run.out_dir={tmp_path}", *extra):
        out += ["--set", s]
    return out


def test_train_arch(synthetic_root, teacher_ckpt, tmp_path):
    assert main(["train-arch", "--recipe", "recipes/arch_fmnist.yaml", "--arch", "min",
                 *sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=a")]) == 0
    final = json.loads((tmp_path / "a/final.json").read_text())
    assert final["space"] == "resnet" and (tmp_path / "a/student/arch.json").exists()


def test_blockwise_training_ranking_and_exact_search(synthetic_root, teacher_ckpt, tmp_path, capsys):
    args = sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=dna", "supernet.bn_batches=1",
                "rankcorr.probe_size=16", "train.checkpoint_every_steps=0")
    assert main(["train-supernet", "--recipe", "recipes/dna_fmnist.yaml", *args]) == 0
    ckpt = str(tmp_path / "dna/checkpoints/last.pt")
    tables = str(tmp_path / "tables.json")
    assert main(["dna-rank", "--recipe", "recipes/dna_fmnist.yaml", "--checkpoint", ckpt, "--out", tables, *args]) == 0
    ranked = json.loads(open(tables).read())
    import search_spaces

    space = search_spaces.get("resnet")
    assert [len(s["candidates"]) for s in ranked["stages"]] == [space.stage_size(i) for i in range(1, 5)]
    assert all("rel_l1" in c for s in ranked["stages"] for c in s["candidates"])
    capsys.readouterr()
    assert main(["dna-search", "--tables", tables, "--budget-fraction", "0.25", "0.5", "--out",
                 str(tmp_path / "dna_search.json")]) == 0
    found = json.loads((tmp_path / "dna_search.json").read_text())
    assert len(found["by_budget"]) == 2 and found["command"] and found["git_commit"]
    # a recipe whose teacher stages differ from training's is refused with both lists
    assert main(["dna-rank", "--recipe", "recipes/dna_fmnist.yaml", "--checkpoint", ckpt, "--out", tables, *args,
                 "--set", "teacher.stages=[stem, stage2, stage3, stage4, stage4]"]) == 2
    assert "trained against teacher stages of widths" in capsys.readouterr().err
    # the dna evaluator and the dna-exhaustive strategy through nas-kd search
    search = sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=s", f"search.dna_tables={tables}",
                  "search.probe_size=16", "search.bn_batches=1", "search.trials=3", "search.extra_evaluators=[]")
    from nas_kd.checkpoint import save_supernet
    from nas_kd.supernet import Supernet

    save_supernet(Supernet(search_spaces.get("resnet")), tmp_path / "super.pt")
    for strategy in ("dna-exhaustive", "evolution"):
        assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--evaluator", "dna", "--strategy", strategy,
                     "--checkpoint", str(tmp_path / "super.pt"), "--budget-mflops", "20", *search]) == 0
        assert json.loads((tmp_path / "s/search.json").read_text())["best"]["mflops"] <= 20
        (tmp_path / "s/search.json").unlink()


def test_ground_truth_command_runs_one_job(synthetic_root, teacher_ckpt, tmp_path, capsys):
    args = sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=gt", f"rankcorr.records={tmp_path}/records",
                "rankcorr.archs_per_band=1", "rankcorr.bands=[0.25]")
    assert main(["ground-truth", "--recipe", "recipes/search_quality_fmnist.yaml", "--max-jobs", "1", *args]) == 0
    progress = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert progress["ran_here"] == 1 and progress["finished"] == 1 and progress["jobs"] == 4
    (record,) = (tmp_path / "records").iterdir()
    r = json.loads(record.read_text())
    assert r["heldout_n"] == 64 + 25
    assert r["machine"]["cpu"] and r["machine"]["torch"] == torch.__version__ and r["machine"]["threads"] >= 1


def test_bench_flops(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "flops", "--num-archs", "2", "--spaces", "resnet", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["command"] and result["spaces"]["resnet"]["all_equal"]
    assert all(result["spaces"]["resnet"]["equal_at_shapes"].values())


def test_bench_latency(tmp_path):
    out = tmp_path / "latency.json"
    assert main(["bench", "latency", "--num-archs", "3", "--spaces", "resnet", "--batch-sizes", "1", "--threads", "1",
                 "--runtimes", "torch", "--min-seconds", "0", "--out", str(out)]) == 0
    b1 = json.loads(out.read_text())["spaces"]["resnet"]["torch"]["batch_1"]
    assert b1["num_archs"] == 3 and 0 <= b1["mape"] and 0 <= b1["within_10pct"] <= 1 and len(b1["archs"]) == 3
    assert {"spearman", "flops_spearman", "calibration", "machine", "retest_spearman", "retest_mape"} <= set(b1)


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys):
    import nas_kd.recipes as recipes

    assert main(["train-arch", "--recipe", "recipes/arch_fmnist.yaml", "--set", "student.space=resnt"]) == 2
    assert capsys.readouterr().err.strip() == ("nas-kd train-arch: error: recipes/arch_fmnist.yaml: student.space: "
                                              "unknown search space 'resnt'. Did you mean 'resnet'? Available: mbv2, resnet")

    def bug(*_a, **_k):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(recipes, "train_arch", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["train-arch", "--recipe", "recipes/arch_fmnist.yaml"])


def test_search_under_a_latency_budget(synthetic_root, teacher_ckpt, tmp_path, capsys, monkeypatch):
    import search_spaces
    from nas_kd.checkpoint import save_supernet
    from nas_kd import latency
    from nas_kd.latency import ANCHOR_POOL, ANCHORS, anchor_archs, build_table, calibration_set, load_table, predict_ms
    from nas_kd.provenance import write_result

    space = search_spaces.get("resnet")
    save_supernet(space.build_supernet(), tmp_path / "super.pt")
    table_path = tmp_path / "table.json"
    write_result(table_path, build_table(space, repeats=2, warmup=1, min_seconds=0, calibration_archs=0, show_progress=False), 0.0,
                 {"command": "test", "git_commit": "test"})
    table = load_table(table_path)
    rng = random.Random(0)
    typical = sorted(space.latency(space.sample(rng), table) for _ in range(9))[4]
    start, later = 1.5, 3.0  # the machine runs 1.5x slower than the table when the search starts, 3x at its end
    budget = start * max(space.latency(space.min_arch(), table), typical)  # timings are noisy: the min arch must fit
    args = sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=s", "search.probe_size=16", "search.bn_batches=1",
                "search.trials=4", "search.extra_evaluators=[]")
    anchors, timed, speed = anchor_archs(space, table, budget), [], [start]
    script = [budget, *[budget / 2 / start] * 3]  # the candidates' times at the table's own speed, in score order

    def fake_timer(space, archs, _table):  # the anchors first, then the candidates (none at the search's start)
        assert archs[:ANCHORS] == anchors
        timed.extend(archs[ANCHORS:])
        times = [predict_ms(space, a, table) * speed[0] for a in anchors] + [t * speed[0] for t in script[:len(archs) - ANCHORS]]
        speed[0] = later
        return times

    monkeypatch.setattr(latency, "measured_ms", fake_timer)
    assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--evaluator", "params", "--strategy", "random",
                 "--checkpoint", str(tmp_path / "super.pt"), "--budget-ms", str(budget), "--latency-table",
                 str(table_path), *args]) == 0
    result = json.loads((tmp_path / "s/search.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "s/candidates.jsonl").read_text().splitlines()]
    # the search ran on the table re-anchored to the machine's speed at its start, by the archs nearest the budget
    assert result["reanchored"]["speed"] == pytest.approx(start) and result["reanchored"]["archs"] == anchors
    pool = {json.dumps(a, sort_keys=True): a for a in calibration_set(space, ANCHOR_POOL, 0)}.values()
    near = sorted(abs(math.log(space.latency(a, table) / budget)) for a in pool)
    assert max(abs(math.log(space.latency(a, table) / budget)) for a in anchors) <= near[ANCHORS - 1] + 1e-12
    assert rows and all(r["latency_ms"] <= budget and r["latency_ms"] == pytest.approx(start * space.latency(r["arch"], table))
                        for r in rows)
    assert result["budget_ms"] == budget and result["best_predicted_latency_ms"] <= budget
    # the final check judged the candidates against the anchors timed beside them, so the slow-down since the start
    # changed no verdict: the pick that measured over the budget gave way to the next candidate by score
    assert result["final_check_rounds"][0]["speed"] == pytest.approx(later / start)
    assert result["best_rank_by_score"] == 2 and result["best"]["arch"] == rows[1]["arch"] == timed[1]
    assert result["best_latency_ms_at_table_speed"] == pytest.approx(budget / 2) and len(result["measured_checks"]) == 4
    assert [c["measured_ms"] for c in result["measured_checks"]] == pytest.approx([t * later for t in script])
    speed[0], script[:] = start, [3 * budget] * 4
    capsys.readouterr()
    assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--evaluator", "params", "--strategy", "random",
                 "--checkpoint", str(tmp_path / "super.pt"), "--budget-ms", str(budget), "--latency-table",
                 str(table_path), *args, "--set", "run.name=u"]) == 2
    assert "none of the 4 best candidates meets it when measured here" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--checkpoint", str(tmp_path / "super.pt"),
                 "--budget-ms", str(budget), *args, "--set", "run.name=t"]) == 2
    assert "needs search.latency_table" in capsys.readouterr().err


def test_a_final_check_that_finds_the_table_optimistic_times_the_next_candidates_that_fit(monkeypatch):
    from types import SimpleNamespace

    from nas_kd.search import run as search_run

    rows = [{"arch": {"i": i}, "latency_ms": p, "mflops": 1.0} for i, p in enumerate([0.95, 0.9, 0.85, 0.8, 0.7, 0.99])]
    timed = []

    def slower(space, archs, table):  # these archs run 20 % slower than the table predicts
        timed.append([a["i"] for a in archs])
        ms = [1.2 * rows[a["i"]]["latency_ms"] for a in archs]
        return {"speed": 1.0, "anchors": [], "measured_ms": ms, "at_table_speed_ms": ms}

    monkeypatch.setattr(search_run, "anchored_ms", slower)
    got = search_run._measured_pick(None, rows, SimpleNamespace(budget_ms=1.0, measure_top=2), {})
    # round 1: ranks 1-2 measure 1.14 and 1.08 ms; predictions / (1 / 1.2): rank 3 (1.02) does not fit, ranks 4
    # (0.96) and 5 do, rank 6 does not; the pick is rank 4 and its own check is reported (not the list's 4th)
    assert timed == [[0, 1], [3, 4]] and got["check"]["rank"] == 4 and got["pick"] is rows[3]
    assert got["check"]["at_table_speed_ms"] == pytest.approx(0.96)
    assert [r["prediction_divided_by"] for r in got["rounds"]] == pytest.approx([1.0, 1 / 1.2])
    assert [c["round"] for c in got["checks"]] == [1, 1, 2, 2]


def test_dna_search_under_latency_budgets(tmp_path, capsys):
    from nas_kd.dna.exact import exact_search
    from nas_kd.latency import build_table
    from nas_kd.provenance import write_result
    import search_spaces

    space = search_spaces.get("resnet", input_shape=(1, 8, 8))
    rng = random.Random(0)
    ranking = {"space": "resnet", "input_shape": [1, 8, 8], "num_classes": 10, "scores": ["rel_l1"],
               "stages": [{"stage": i, "candidates": [{"cand": c, "rel_l1": rng.random()} for c in space.stage_candidates(i)]}
                          for i in range(1, 5)]}
    (tmp_path / "ranking.json").write_text(json.dumps(ranking))
    table = build_table(space, repeats=1, warmup=0, min_seconds=0, calibration_archs=0, show_progress=False)
    write_result(tmp_path / "lt.json", table, 0.0, {"command": "test", "git_commit": "test"})
    typical = sorted(space.latency(space.sample(rng), table) for _ in range(9))[4]
    budget = max(typical, space.latency(space.min_arch(), table))
    found = exact_search(ranking, [], k=2, budgets_ms=[budget], latency_table=table, check_fvcore=False)
    (top, *_), = found["by_budget"].values()
    assert found["cost"] == "latency" and top["latency_ms"] <= budget and top["measured_latency_ms"] > 0
    assert main(["dna-search", "--tables", str(tmp_path / "ranking.json"), "--budget-ms", str(budget),
                 "--latency-table", str(tmp_path / "lt.json"), "--out", str(tmp_path / "out.json")]) == 0
    assert main(["dna-search", "--tables", str(tmp_path / "ranking.json"), "--budget-ms", str(budget),
                 "--budget-mflops", "5", "--latency-table", str(tmp_path / "lt.json")]) == 2
    assert "not both" in capsys.readouterr().err


def test_acceptance_seeds_default_to_the_acceptance_count(monkeypatch, capsys):
    from nas_kd.rankcorr import acceptance

    asked = []
    monkeypatch.setattr(acceptance, "run_acceptance", lambda *a, **kw: asked.append(kw["seeds"]) or {})
    for extra in ([], ["--seeds", "5"]):
        assert main(["acceptance", "--recipe", "recipes/search_quality_fmnist_2k.yaml", "--band", "0.12",
                     "--evaluator", "rdm", *extra]) == 0
    assert asked == [3, 5]  # acceptance.seeds of the recipe (its default), then --seeds


def test_tensorboard_scalars_of_a_training_run_and_a_search(synthetic_root, teacher_ckpt, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import search_spaces
    from nas_kd.checkpoint import save_supernet

    def read(directory):
        acc = EventAccumulator(str(directory))
        acc.Reload()
        return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}

    args = ["train-arch", "--recipe", "recipes/arch_fmnist.yaml", "--arch", "min"]
    for s in (f"data.root={synthetic_root}", f"run.out_dir={tmp_path}", "run.name=a", "data.limit_train=64",
              "data.val_size=32", "data.limit_test=32", "train.epochs=2", "run.tensorboard=true"):
        args += ["--set", s]
    assert main(args) == 0
    logged = read(tmp_path / "a" / "tensorboard")
    metrics = [json.loads(line) for line in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert logged["val_acc"] == pytest.approx([m["val_acc"] for m in metrics]) and "lr" in logged
    assert len(list((tmp_path / "a" / "tensorboard").iterdir())) == 1  # one event file for the run, not one per epoch

    save_supernet(search_spaces.get("resnet").build_supernet(), tmp_path / "super.pt")
    assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--evaluator", "params", "--strategy", "random",
                 "--checkpoint", str(tmp_path / "super.pt"),
                 *sets(synthetic_root, tmp_path, teacher_ckpt, "run.name=s", "search.probe_size=16", "search.bn_batches=1",
                       "search.trials=5", "search.extra_evaluators=[]", "run.tensorboard=true")]) == 0
    scores = read(tmp_path / "s" / "tensorboard")
    assert len(scores["search/params"]) == 5 and scores["search/best_so_far"] == sorted(scores["search/best_so_far"])
