import json

import numpy as np
import search_spaces

from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.rankcorr import ground_truth as gt_mod
from nas_kd.rankcorr.ground_truth import run_ground_truth, sample_study_archs
from nas_kd.rankcorr.stats import STATS


def recipe(tmp_path, root, *extra):
    return load_recipe("recipes/rankcorr_fmnist.yaml", [
        f"data.root={root}", f"run.out_dir={tmp_path}", "run.name=study", "data.limit_train=256", "data.val_size=64",
        "data.limit_test=64", "data.batch_size=64", "train.epochs=1", "rankcorr.num_archs=2", *extra])


def test_study_archs_cover_the_flops_range():
    r = load_recipe("recipes/rankcorr_fmnist.yaml", ["rankcorr.num_archs=12"])
    space = search_spaces.get("resnet")
    flops = [space.flops(a) for a in sample_study_archs(r)]
    lo, hi = space.flops(space.min_arch()), space.flops(space.max_arch())
    assert len(set(map(str, sample_study_archs(r)))) == 12
    assert min(flops) < lo + 0.25 * (hi - lo) and max(flops) > lo + 0.75 * (hi - lo)
    assert flops == sorted(flops)


def test_ground_truth_is_cached_per_arch(tmp_path, fmnist_root, monkeypatch):
    r = recipe(tmp_path, fmnist_root)
    first = run_ground_truth(r, tmp_path / "study", show_progress=False)
    assert len(first) == 2 and all(0 <= g["test_acc"] <= 1 for g in first)
    trained = []
    monkeypatch.setattr(gt_mod, "train_arch", lambda *a, **k: trained.append(a))
    again = run_ground_truth(r, tmp_path / "study", show_progress=False)
    assert trained == [] and again == first


def test_claimed_arch_is_left_to_its_worker(tmp_path, fmnist_root, monkeypatch):
    r = recipe(tmp_path, fmnist_root)
    root = tmp_path / "study" / "ground_truth"
    root.mkdir(parents=True)
    ids = [gt_mod.arch_id(a) for a in sample_study_archs(r)]
    (root / f"{ids[0]}.claim").touch()  # another worker is on it
    trained = []
    monkeypatch.setattr(gt_mod, "train_arch", lambda rec, arch, **k: trained.append(gt_mod.arch_id(arch)))
    run_ground_truth(r, tmp_path / "study", show_progress=False)
    assert trained == ids[1:]


def test_plot_redraws_from_saved_json(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.9, 0.93, 10).tolist()
    gt = [{"id": str(i), "arch": {}, "mflops": float(i), "test_acc": t} for i, t in enumerate(truth)]
    scores, stats = {}, {}
    for ep in ("1", "2"):
        s = (np.array(truth) + rng.normal(0, 0.01, 10)).tolist()
        scores[ep] = {"kl": s, "kl_raw": s}
        stats[ep] = {"kl": {**{k: f(s, truth) for k, f in STATS.items()}, "kendall_tau_ci95": [-0.1, 0.5],
                            "top_n_kendall": {"10": 0.1}}}
    (tmp_path / "rankcorr.json").write_text(json.dumps({"ground_truth": gt, "scores": scores, "stats": stats,
                                                         "evaluators": ["kl"], "epochs": [1, 2]}))
    assert main(["plot", "--run", str(tmp_path)]) == 0
    for name in ("rank_corr_vs_epoch", "scatter_final_epoch", "gt_acc_vs_mflops"):
        for ext in ("png", "svg"):
            assert (tmp_path / f"{name}.{ext}").stat().st_size > 1000
