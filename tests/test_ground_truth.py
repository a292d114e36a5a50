"""Search-quality ground truth: budget bands, the job plan, the Optuna-study job queue, committed records."""
import json
import subprocess
import sys
import time

import pytest

import search_spaces
from nas_kd.config import load_recipe
from nas_kd.errors import UserError
from nas_kd.rankcorr import ground_truth as gt
from nas_kd.recipes import study_of
from nas_kd.studies import JobQueue


def recipe(tmp_path, *extra):
    return load_recipe("recipes/search_quality_fmnist.yaml", [
        f"run.out_dir={tmp_path}", f"rankcorr.records={tmp_path}/records", *extra])


@pytest.mark.parametrize("fraction", [0.06, 0.12, 0.25])
def test_band_archs_stay_in_band_and_are_deterministic(fraction):
    space = search_spaces.get("resnet")
    archs = gt.band_archs(space, fraction, 16, seed=0, floor=0.8)
    budget = fraction * space.flops(space.max_arch())
    flops = [space.flops(a) for a in archs]
    assert len({gt.arch_id(a) for a in archs}) == 16
    assert all(0.8 * budget <= f <= budget for f in flops) and flops == sorted(flops)
    assert max(flops) - min(flops) > 0.1 * budget  # spread over the band, not one point
    assert archs == gt.band_archs(space, fraction, 16, seed=0, floor=0.8)
    assert archs != gt.band_archs(space, fraction, 16, seed=1, floor=0.8)


def test_impossible_band_is_refused():
    with pytest.raises(UserError, match="below the smallest"):
        gt.band_archs(search_spaces.get("resnet"), 0.01, 4, 0, 0.8)


def test_plan_orders_seed_pairs_first_and_skips_recorded_jobs(tmp_path, monkeypatch, synthetic_root):
    r = study_of(recipe(tmp_path, "rankcorr.archs_per_band=2", f"data.root={synthetic_root}", "data.val_size=64"))
    jobs = list(gt.plan(r).items())
    assert len(jobs) == 2 * 3 * 2 * 2  # columns x bands x archs x seeds
    assert [j["seed"] for _, j in jobs[:2]] == [0, 1] and jobs[0][1]["arch"] == jobs[1][1]["arch"]
    assert {j["column"] for _, j in jobs[:12]} == {"kd"}
    scratch, terms, ce_weight = gt.job_setup(r, jobs[-1][0], jobs[-1][1], tmp_path)
    assert terms == () and ce_weight == 1.0 and scratch.seed == 1 and scratch.run.path == tmp_path / "jobs" / jobs[-1][0]
    assert scratch.run.config["distill"] == [] and scratch.run.config["seed"] == 1  # its config.yaml says so too
    kd, terms, _ = gt.job_setup(r, jobs[0][0], jobs[0][1], tmp_path)
    assert [t.name for t in terms] == [t["name"] for t in kd.run.config["distill"]] and terms
    # recorded jobs are not enqueued again; the others are trained once each
    (tmp_path / "records").mkdir()
    for key, _ in jobs[:5]:
        (tmp_path / "records" / f"{key}.json").write_text(json.dumps({"heldout_acc": 0.5}))
    trained = []

    def fake(recipe, key, job, out, **_):
        trained.append(key)
        recipe.record_path(key).write_text(json.dumps({"heldout_acc": 0.9}))

    monkeypatch.setattr(gt, "train_job", fake)
    summary = gt.run_ground_truth(r, tmp_path / "run", show_progress=False)
    assert trained == [k for k, _ in jobs[5:]] and summary["finished"] == len(jobs)
    assert gt.run_ground_truth(r, tmp_path / "run", show_progress=False)["ran_here"] == 0


def test_heldout_accuracy_pools_test_and_validation():
    h = gt.heldout({"test_acc": 0.9, "val_acc": 0.8}, 10000, 2000)
    assert h["heldout_acc"] == pytest.approx((9000 + 1600) / 12000) and h["heldout_n"] == 12000
    assert h["heldout_se"] == pytest.approx((h["heldout_acc"] * (1 - h["heldout_acc"]) / 12000) ** 0.5)


def _workers(url, log, n, hold):
    return [subprocess.Popen([sys.executable, "tests/queue_worker.py", url, str(log), str(hold)]) for _ in range(n)]


def test_two_workers_never_run_the_same_job(tmp_path, storage):
    url = storage
    keys = [f"job{i}" for i in range(8)]
    JobQueue(url, "test").enqueue(keys)
    log = tmp_path / "log"
    for p in _workers(url, log, 2, 0.2):
        assert p.wait(timeout=120) == 0
    started = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")]
    assert sorted(started) == sorted(keys)  # every job once, none twice
    assert JobQueue(url, "test").done() == set(keys)


def test_a_killed_workers_job_is_picked_up_again(tmp_path, storage):
    url = storage
    q = JobQueue(url, "test", heartbeat_seconds=1, grace_seconds=2)
    q.enqueue(["sleep", "after"])
    log = tmp_path / "log"
    (first,) = _workers(url, log, 1, 0.1)
    deadline = time.time() + 60
    while not (log.exists() and "start sleep" in log.read_text()) and time.time() < deadline:
        time.sleep(0.2)
    first.kill()  # dies holding the job 'sleep' as RUNNING
    first.wait()
    time.sleep(3)  # past the grace period: the job is stale
    ran = q.work(lambda key: 1.0)
    assert sorted(ran) == ["after", "sleep"] and {"after", "sleep"} <= q.done()


def test_a_job_left_in_the_queue_by_an_older_plan_is_dropped(tmp_path, capsys):
    q = JobQueue(f"sqlite:///{tmp_path}/q.db", "test")
    q.enqueue(["old", "new"])
    assert q.work(lambda key: 1.0, known={"new"}) == ["new"]
    assert q.done() == {"new"} and q.waiting() == 0
    assert "dropping the queued job 'old'" in capsys.readouterr().err
    assert q.enqueue(["old"]) == 1  # a later plan that has it queues it again
