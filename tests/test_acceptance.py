"""Search acceptance: the hand-designed pick, the queue of missing seeds, the Welch-tested table (fake training)."""
import json

import pytest

import search_spaces
from nas_kd.config import load_recipe
from nas_kd.errors import UserError
from nas_kd.rankcorr import acceptance
from nas_kd.rankcorr import ground_truth as gt
from nas_kd.recipes import acceptance_plans, study_of


@pytest.mark.parametrize("space", ["resnet", "mbv2"])
def test_handcrafted_arch_is_the_largest_uniform_scaling_under_budget(space):
    sp = search_spaces.get(space)
    budget = 0.12 * sp.flops(sp.max_arch())
    arch = acceptance.handcrafted_arch(sp, budget)
    assert 0.5 * budget < sp.flops(arch) <= budget
    with pytest.raises(UserError, match="fits"):
        acceptance.handcrafted_arch(sp, 0.5 * sp.flops(sp.min_arch()))


def searching(pick):
    """A fake ``acceptance._search``: ``pick(args)``'s arch, its run's ``search.json`` written as a search would."""
    def search(*a):
        run = a[2] / a[-2]
        run.mkdir(parents=True, exist_ok=True)
        (run / "search.json").write_text(json.dumps({"scored": 4}))
        return pick(a)
    return search


def test_acceptance_trains_missing_seeds_and_writes_the_table(tmp_path, monkeypatch, synthetic_root):
    r = load_recipe("recipes/search_quality_fmnist.yaml", [f"run.out_dir={tmp_path}", f"data.root={synthetic_root}",
                                                           "data.val_size=64", f"rankcorr.records={tmp_path}/gt/records"])
    study = study_of(r)
    space = search_spaces.get("resnet")
    band = "0.12"
    monkeypatch.setattr(acceptance, "_search", searching(
        lambda a: space.max_arch() if a[-2].endswith("maxflops") else space.min_arch()))
    assert "random_best" not in acceptance.picks(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band, tmp_path, 5)  # no ground truth yet
    (tmp_path / "gt/records").mkdir(parents=True)
    archs = gt.study_bands(study)[band]
    for i, arch in enumerate(archs[:10]):
        for seed in (0, 1):  # arch 3 has the best seed-0 validation accuracy, but is poor on other seeds
            val = 0.99 if i == 3 and seed == 0 else 0.9 + 0.001 * i
            key = gt.job_key("resnet", band, arch, "kd", seed)
            study.record_path(key).write_text(json.dumps({"heldout_acc": 0.90 + 0.001 * i, "val_acc": val}))
    for seed in (0, 1, 2):  # the band's largest arch has its ground truth
        study.record_path(gt.job_key("resnet", band, archs[-1], "kd", seed)).write_text(
            json.dumps({"heldout_acc": 0.93 + 0.001 * seed, "val_acc": 0.93}))
    trained = []

    def fake(study, key, job, out, records=None, **_):
        trained.append(key)
        acc = {"acc-searched": 0.95, "acc-maxflops": 0.91, "acc-handcrafted": 0.92}.get(key.split("-resnet")[0], 0.80)
        path = study.record_path(key, records)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"heldout_acc": acc + 0.001 * job["seed"]}))

    monkeypatch.setattr(gt, "train_job", fake)
    result = acceptance.run_acceptance(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band=band, trials=5, seeds=3,
                                       result=str(tmp_path / "search_b0.12"), show_progress=False)
    # three picks x 3 seeds, plus seeds 2 and 3 of the best random arch (seed 0 chose it: held out)
    assert len(trained) == 3 * 3 + 2
    rb = result["picks"]["random_best"]
    assert rb["arch_id"] == gt.arch_id(archs[3]) and rb["seeds"] == [1, 2, 3]
    assert rb["accs"] == pytest.approx([0.903, 0.802, 0.803])  # seed 1 from the ground truth, not seed 0
    assert result["picks"]["band_max"]["accs"] == pytest.approx([0.93, 0.931, 0.932])  # all from the ground truth
    assert result["student_acc"] == pytest.approx(0.951) and result["p_values_welch"]["maxflops"] < 0.01
    assert set(result) >= {"budget_mflops", "student_mflops", "student_acc", "student_acc_std", "random_best_acc",
                           "handcrafted_acc", "maxflops_acc", "band_max_acc", "p_value", "command", "git_commit",
                           "wall_seconds"}
    table = (tmp_path / "search_b0.12.md").read_text()
    assert "| searched |" in table  # the band's dots stay in the name
    assert result["scored"] == 4 and "`evolution`'s best by `kl` (4 archs scored, 5 allowed)" in table
    assert json.loads((tmp_path / "search_b0.12.json").read_text())["student_acc"] == result["student_acc"]
    # the study's README lists the acceptances written beside it
    (tmp_path / "acceptance_b0.12.json").write_text((tmp_path / "search_b0.12.json").read_text())
    rows = [line for line in acceptance.summary_lines(tmp_path) if line.startswith("| [acceptance_b0.12]")]
    assert len(rows) == 1 and "| kl | 3 | 95.10 +- 0.10 | 91.10 +- 0.10 (" in rows[0]

    trained.clear()  # more seeds later: only the new ones train, for every pick
    more = acceptance.run_acceptance(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band=band, trials=5, seeds=4,
                                     result=str(tmp_path / "search_b0.12_4seeds"), show_progress=False)
    assert sorted(k.split("-resnet")[0] for k in trained) == ["acc-band_max", "acc-handcrafted", "acc-maxflops",
                                                              "acc-random_best", "acc-searched"]
    assert sorted(k[-2:] for k in trained) == ["s3", "s3", "s3", "s3", "s4"] and more["seeds"] == [0, 1, 2, 3]
    assert more["student_acc"] == pytest.approx(0.9515)
    with pytest.raises(UserError, match="at least 2 seeds"):
        acceptance.run_acceptance(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band=band, trials=5, seeds=1,
                                  result=str(tmp_path / "x"), show_progress=False)

    # the search repeated: every repeat's pick is trained (an arch found twice once), and its spread reported
    found = {0: space.min_arch(), 1: space.min_arch(), 2: space.max_arch()}
    monkeypatch.setattr(acceptance, "_search", searching(
        lambda a: space.max_arch() if a[-2].endswith("maxflops") else found[a[-1]]))
    trained.clear()
    rep = acceptance.run_acceptance(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band=band, trials=5, seeds=3,
                                    search_repeats=3, result=str(tmp_path / "rep"), show_progress=False)
    # repeat 1 found repeat 0's arch: its records are shared; repeat 2's arch trains as a searched student
    assert sorted(trained) == [gt.job_key("acc-searched-resnet", band, space.max_arch(), "kd", s) for s in range(3)]
    assert [x["search_seed"] for x in rep["search_repeats"]] == [r.seed, r.seed + 1, r.seed + 2]
    assert [x["arch_id"] for x in rep["search_repeats"]] == [gt.arch_id(a) for a in found.values()]
    assert rep["search_repeat_sd"] == pytest.approx(0) and "2 distinct archs" in (tmp_path / "rep.md").read_text()


def test_each_band_searches_in_its_own_run(tmp_path, monkeypatch, synthetic_root):
    r = load_recipe("recipes/search_quality_fmnist.yaml", [f"run.out_dir={tmp_path}", f"data.root={synthetic_root}",
                                                           "data.val_size=64"])
    study = study_of(r)
    names = []
    monkeypatch.setattr(acceptance, "_search", lambda *a: names.append(a[-2]) or search_spaces.get("resnet").min_arch())
    for band in ("0.06", "0.12"):
        acceptance.picks(study, *acceptance_plans(r, "kl", "evolution"), r.acceptance, band, tmp_path, 5)
    assert len(names) == len(set(names)) == 4
