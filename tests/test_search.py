import json
import multiprocessing as mp
import random

import pytest

import search_spaces
from nas_kd.errors import BudgetError
from nas_kd.search import STRATEGIES, Objective
from conftest import run_strategy


def cheap_score(space):
    calls = []

    def score(arch):
        calls.append(arch)
        flops = space.flops(arch)
        # a made-up quality: rewards width in late stages, penalises depth early
        value = sum(arch[f"stage{i}.width"] * i for i in range(1, 5)) - 20 * arch["stage1.depth"]
        return {"arch": arch, "mflops": flops / 1e6, "mparams": space.params(arch) / 1e6, "q": value}

    return score, calls


def objective(budget_mflops, space_name="resnet"):
    space = search_spaces.get(space_name)
    score, calls = cheap_score(space)
    return Objective(space, score, "q", budget_mflops * 1e6), calls


def test_impossible_budget_names_the_range():
    with pytest.raises(BudgetError, match=r"below the smallest resnet arch \(2.847 MFLOPs; the largest has 90.425\)"):
        objective(1.0)


def test_evolution_beats_random_on_a_simple_objective():
    best = {}
    for name in ("random", "evolution"):
        wins = []
        for seed in range(3):
            obj, _ = objective(30.0)
            wins.append(run_strategy(name, obj, 60, seed=seed)[0]["q"])
        best[name] = sum(wins) / 3
    assert best["evolution"] > best["random"]


def test_optuna_study_resumes_without_rescoring(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    obj, calls = objective(30.0)
    first = run_strategy("optuna-tpe", obj, 6, seed=0, storage=storage, study_name="r")
    obj2, calls2 = objective(30.0)
    second = run_strategy("optuna-tpe", obj2, 9, seed=0, storage=storage, study_name="r")
    assert len(calls2) <= 3  # only the 3 new trials can be scored
    known = {json.dumps(r["arch"], sort_keys=True) for r in first}
    assert known <= {json.dumps(r["arch"], sort_keys=True) for r in second}


def _worker(storage, out=None):
    obj, _ = objective(30.0)
    rows = run_strategy("optuna-tpe", obj, 12, seed=random.randrange(1000), storage=storage, study_name="shared")
    if out:
        with open(out, "w") as f:
            json.dump(rows, f)


def test_two_workers_share_one_study(tmp_path, storage):
    import optuna

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(storage, tmp_path / f"w{i}.json")) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    study = optuna.load_study(study_name="shared", storage=storage)
    scored = {json.dumps(json.loads(t.user_attrs["row"])["arch"], sort_keys=True)
              for t in study.trials if "row" in t.user_attrs}
    assert 12 <= len(scored) <= 14  # --trials counts distinct archs; each worker stops once the study has 12
    w0, w1 = (json.loads((tmp_path / f"w{i}.json").read_text()) for i in range(2))
    last = max((w0, w1), key=len)
    assert len(last) == len(scored)  # the worker that finished last reports every arch the study scored
    assert last[0]["q"] == max(r["q"] for r in w0 + w1)  # ... and the study's best


def test_strategy_and_evaluator_options_are_checked():
    from nas_kd.errors import OptionError
    from nas_kd.evaluators import build_evaluators

    obj, _ = objective(20.0)
    with pytest.raises(OptionError, match="strategy 'evolution' has no option 'populaton' \\(did you mean 'population'"):
        run_strategy("evolution", obj, 5, {"populaton": 4})
    with pytest.raises(OptionError, match="strategy 'random' has no option 'population'"):
        run_strategy("random", obj, 5, {"population": 4})
    with pytest.raises(OptionError, match=r"search.strategy \(evolution\).population: expected int, got 'many'"):
        run_strategy("evolution", obj, 5, {"population": "many"})
    with pytest.raises(OptionError, match=r"search.strategy \(evolution\).mutation_prob: must be >= 0 and <= 1, got 1.5"):
        run_strategy("evolution", obj, 5, {"mutation_prob": 1.5})
    assert len(run_strategy("evolution", obj, 6, {"population": 3, "sample_size": 2}, seed=0)) >= 1
    with pytest.raises(OptionError, match="e: evaluator 'rdm' has no option 'paring' \\(did you mean 'pairing'"):
        build_evaluators([{"name": "rdm", "paring": "best"}], "e")
    with pytest.raises(OptionError, match=r"e\.method: 'kendall' is not one of spearman, pearson"):
        build_evaluators([{"name": "rdm", "method": "kendall"}], "e")
    with pytest.raises(OptionError, match=r"e\.proj_dim: must be >= 2, got 1"):
        build_evaluators([{"name": "rdm", "proj_dim": 1}], "e")
    (rdm,) = build_evaluators([{"name": "rdm", "method": "pearson", "pairing": "best", "proj_dim": 64}], "e")
    assert (rdm.name, rdm.method, rdm.pairing, rdm.proj_dim) == ("rdm[method=pearson,pairing=best,proj_dim=64]",
                                                                  "pearson", "best", 64)


def test_a_journal_cut_mid_line_by_a_kill_keeps_its_whole_rows(tmp_path):
    journal = tmp_path / "scored.jsonl"
    obj, calls = objective(30.0)
    obj.journal = journal
    run_strategy("evolution", obj, 6, seed=0)
    rows = journal.read_text().splitlines()
    assert len(rows) == 6
    journal.write_text("\n".join(rows[:3]) + "\n" + rows[3][:20])  # killed while writing the fourth row
    space = search_spaces.get("resnet")
    again, calls = cheap_score(space)
    resumed = Objective(space, again, "q", 30e6, journal=journal)
    assert len(resumed.cache) == 3 and journal.read_text().endswith("\n")
    run_strategy("evolution", resumed, 6, seed=0)
    assert len(calls) == 3  # only the three lost rows are scored again
    assert journal.read_text().splitlines() == rows  # the same rows, in the same order
