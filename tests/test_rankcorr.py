"""The banded search-quality study end to end on tiny synthetic data (fake ground-truth records)."""
import dataclasses
import json
import random

import pytest

import search_spaces
from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.errors import UserError
from nas_kd.evaluators import build_evaluators
from nas_kd.rankcorr import ground_truth as gt
from nas_kd.rankcorr.study import run_rank_corr
from nas_kd.recipes import study_of
from nas_kd.checkpoint import save_supernet
from nas_kd.supernet import Supernet


@pytest.fixture
def study(tmp_path, synthetic_root):
    space = search_spaces.get("resnet")
    ckpt = tmp_path / "supernet.pt"
    save_supernet(Supernet(space), ckpt, epoch=3)
    r = study_of(load_recipe("recipes/search_quality_fmnist.yaml", [
        f"data.root={synthetic_root}", "data.val_size=64", "data.limit_train=128", f"run.out_dir={tmp_path}",
        f"rankcorr.records={tmp_path}/records", f"rankcorr.out={tmp_path}/out", f"rankcorr.supernet_run={ckpt}",
        "rankcorr.bands=[0.12, 0.25]", "rankcorr.archs_per_band=8", "rankcorr.columns=[kd]", "rankcorr.probe_size=16",
        "rankcorr.bn_batches=1", "rankcorr.bootstrap=20", "rankcorr.evaluators=[kl, synflow, flops, params]",
        "rankcorr.dna_tables=null"]))
    rng = random.Random(0)
    (tmp_path / "records").mkdir()
    for key, job in gt.plan(r).items():
        acc = 0.9 + 0.01 * rng.random()
        (tmp_path / "records" / f"{key}.json").write_text(json.dumps(
            {**job, "heldout_acc": acc, "heldout_se": 0.003}))
    return r, tmp_path


def test_study_reports_every_band_and_reuses_scores(study, monkeypatch):
    r, tmp_path = study
    summary = run_rank_corr(r, show_progress=False)
    assert set(summary["noise_ceiling"]["resnet"]) == {"0.12", "0.25"}
    taus = summary["kendall_tau_band"]["resnet"]["0.12"]
    assert set(taus) == {"kl", "synflow", "flops", "params", "fitted"}
    assert summary["regret"]["resnet"]["0.25"]["flops"] == pytest.approx(summary["maxflops_regret"]["resnet"]["0.25"])
    assert summary["random_regret"]["resnet"]["0.12"] >= 0 and summary["command"] and summary["git_commit"]
    out = tmp_path / "out"
    assert "### Band 0.12" in (out / "README.md").read_text()
    for f in ("tau_per_band_kd.png", "regret_kd.png", "rankcorr.json"):
        assert (out / f).stat().st_size > 1000
    import nas_kd.rankcorr.study as ev

    calls = []
    monkeypatch.setattr(ev, "score_archs", lambda *a, **k: calls.append(a) or [])
    run_rank_corr(r, show_progress=False)
    assert calls == []  # every arch already scored at this checkpoint
    assert main(["plot", "--run", str(out)]) == 0
    (out / "findings.md").write_text("Nothing beats flops here.\n")  # hand-written; a rerun keeps it in the README
    run_rank_corr(r, show_progress=False)
    assert ("## What the numbers say (hand-written: `findings.md`)\n\nNothing beats flops here.\n"
            in (out / "README.md").read_text())
    (tmp_path / "supernet.pt").unlink()  # a clone without the uncommitted supernet: the cached scores serve
    assert run_rank_corr(r, show_progress=False)["kendall_tau_band"] == summary["kendall_tau_band"]
    r.cfg.bands = [0.12]  # one band: the fitted combination is cross-validated by k-fold inside it
    assert "fitted" in run_rank_corr(r, show_progress=False)["kendall_tau_band"]["resnet"]["0.12"]
    r.cfg.archs_per_band = 9  # a new arch to score needs the supernet
    with pytest.raises(UserError, match="does not exist and epoch 3 has archs to score"):
        run_rank_corr(r, show_progress=False)


def test_a_supernet_of_another_space_is_refused(study, tmp_path):
    r, _ = study
    other = tmp_path / "mbv2.pt"
    save_supernet(Supernet(search_spaces.get("mbv2")), other, epoch=1)
    r.cfg.supernet_run = str(other)
    with pytest.raises(UserError, match="is a 'mbv2' supernet"):
        run_rank_corr(r, show_progress=False)


def test_only_the_chosen_epochs_are_scored_and_a_changed_checkpoint_is_rescored(study, tmp_path, monkeypatch):
    import torch

    import nas_kd.rankcorr.study as ev

    r, _ = study
    run = tmp_path / "supernet_run"
    (run / "checkpoints").mkdir(parents=True)
    space = search_spaces.get("resnet")
    for epoch in (1, 2, 3):
        torch.manual_seed(epoch)
        save_supernet(Supernet(space), run / "checkpoints" / f"epoch{epoch:03d}.pt", epoch=epoch)
    r.cfg.supernet_run, r.cfg.epochs = str(run), [1, 3]
    summary = run_rank_corr(r, show_progress=False)
    assert summary["epoch"] == 3
    saved = json.loads((tmp_path / "out" / "rankcorr.json").read_text())
    assert set(saved["scores"]) == set(saved["checkpoints"]) == {"1", "3"}
    assert set(saved["columns"]["kd"]["metrics"]) == {"1", "3"}

    torch.manual_seed(7)  # epoch 3 retrained: its kl scores are stale, the arch-only ones still hold
    save_supernet(Supernet(space), run / "checkpoints" / "epoch003.pt", epoch=3)
    real, calls = ev.score_archs, []
    monkeypatch.setattr(ev, "score_archs", lambda ctx, archs, evs, **k: calls.append([e.name for e in evs])
                        or real(ctx, archs, evs, **k))
    again = run_rank_corr(r, show_progress=False)
    assert calls == [["kl"]]  # epoch 1 unchanged: nothing; epoch 3: kl only
    assert again["kendall_tau_band"]["resnet"]["0.12"]["synflow"] == summary["kendall_tau_band"]["resnet"]["0.12"]["synflow"]
    r.cfg.epochs = [4]
    with pytest.raises(UserError, match=r"epoch\(s\) \[4\].*has epochs \[1, 2, 3\]"):
        run_rank_corr(r, show_progress=False)


def test_scores_of_finished_epochs_survive_a_failure(study, tmp_path, monkeypatch):
    import nas_kd.rankcorr.study as ev

    r, _ = study
    run = tmp_path / "supernet_run"
    (run / "checkpoints").mkdir(parents=True)
    for epoch in (1, 2):
        save_supernet(Supernet(search_spaces.get("resnet")), run / "checkpoints" / f"epoch{epoch:03d}.pt", epoch=epoch)
    r.cfg.supernet_run = str(run)
    r = dataclasses.replace(r, evaluators=tuple(build_evaluators(["kl", "flops"], "rankcorr.evaluators")))
    real, calls = ev.score_archs, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # stopped while scoring epoch 2
        return real(*a, **k)

    monkeypatch.setattr(ev, "score_archs", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_rank_corr(r, show_progress=False)
    saved = json.loads((tmp_path / "out" / "rankcorr.json").read_text())
    assert set(saved["scores"]["1"]) == {"kl", "flops"} and len(saved["scores"]["1"]["kl"]) == 16
    calls.clear()
    run_rank_corr(r, show_progress=False)
    assert len(calls) == 1  # only epoch 2 is scored again


def test_checkpoint_taus_rank_the_band_archs_against_the_ground_truth(study, tmp_path):
    """Kendall tau of an evaluator scored on one supernet checkpoint against the committed ground truth."""
    from nas_kd.rankcorr.stats import kendall_tau
    from nas_kd.rankcorr.study import checkpoint_taus

    recipe, _ = study
    space = search_spaces.get(recipe.space)
    taus = checkpoint_taus(recipe, recipe.cfg.supernet_run, build_evaluators(["flops", "kl"], "rankcorr.evaluators"))
    for band, archs in gt.study_bands(recipe).items():
        truth = [sum(json.loads(recipe.record_path(gt.job_key(space.name, band, a, "kd", s)).read_text())["heldout_acc"]
                     for s in recipe.cfg.seeds) for a in archs]
        assert taus[band]["flops"] == pytest.approx(kendall_tau([space.flops(a) for a in archs], truth))
        assert -1 <= taus[band]["kl"] <= 1
