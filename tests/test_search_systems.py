"""The search strategies of issue 23 on toy scores and a tiny untrained supernet: reinforce, slim, cream-board."""
import json
import random

import pytest
import torch

import search_spaces
from nas_kd.checkpoint import save_checkpoint
from nas_kd.data import load_dataset
from nas_kd.errors import UserError
from nas_kd.evaluators import EvalContext
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.search import Objective
from nas_kd.search.reinforce import CategoricalPolicy
from conftest import run_strategy
from nas_kd.supernet import Supernet

SPACE = search_spaces.get("resnet")


def toy(arch):
    """Wider is better, deeper stage 1 is worse: the best arch under a budget is not the largest."""
    return sum(arch[f"stage{i}.width"] * i for i in range(1, 5)) - 40 * arch["stage1.depth"]


def objective(budget_mflops=20.0):
    def score(arch):
        return {"arch": arch, "mflops": SPACE.flops(arch) / 1e6, "mparams": SPACE.params(arch) / 1e6, "q": toy(arch)}

    return Objective(SPACE, score, "q", budget_mflops * 1e6)


def test_reinforce_raises_the_probability_of_the_best_arch():
    policy = CategoricalPolicy(SPACE.choices)
    best = SPACE.max_arch() | {"stage1.depth": 1}
    decisive = [f"stage{i}.width" for i in range(1, 5)] + ["stage1.depth"]  # the only choices the toy score reads

    def p_best():
        return float(torch.tensor([policy.probs(lbl)[SPACE.choices[lbl].index(best[lbl])] for lbl in decisive]).prod())

    start, rng, mean = p_best(), random.Random(0), None
    for _ in range(500):
        arch = SPACE.canonical(policy.sample(rng))
        r = toy(arch)
        mean = r if mean is None else 0.9 * mean + 0.1 * r
        policy.update(arch, (r - mean) / 50, 0.2, 0.0)
    assert p_best() > 20 * start
    # the strategy itself: later archs score better than the first ones, and every scored arch fits the budget
    obj = objective()
    run_strategy("reinforce", obj, 60, {}, seed=0)
    scores = [row["q"] for row in obj.cache.values()]  # in the order they were scored
    third = len(scores) // 3
    assert third >= 5 and sum(scores[-third:]) / third > sum(scores[:third]) / third
    assert all(row["mflops"] <= 20.0 for row in obj.cache.values())


@pytest.fixture(scope="module")
def context(synthetic_root):
    data = load_dataset("fashion-mnist", synthetic_root, val_size=32)
    torch.manual_seed(0)
    teacher = ResNetTeacher(widths=(8, 8, 8, 8)).eval().requires_grad_(False)
    return EvalContext.build(Supernet(SPACE), teacher, data, teacher_stages=["stem", "stage1", "stage2", "stage3", "stage4"],
                             probe_size=16, bn_batches=1, batch_size=32, seed=0, channels_last=False)


def test_slim_reads_an_arch_of_the_space_under_the_budget_off_its_gates(context, tmp_path):
    before = {k: v.clone() for k, v in context.supernet.state_dict().items()}
    found = {}
    for budget in (30.0, 8.0):
        obj = objective(budget)
        rows = run_strategy("slim", obj, 5, {"steps": 3, "l1": 1e-3}, context=context, workdir=tmp_path)
        record = json.loads((tmp_path / "slim.json").read_text())
        arch = SPACE.validate(record["arch"])
        assert SPACE.flops(arch) <= budget * 1e6 and [r["arch"] for r in rows] == [arch]  # the gates' student alone
        assert record["kd_loss_first"] > 0 and len(record["kept_width"]) == len(SPACE.stages)
        found[budget] = SPACE.flops(arch)
    assert found[8.0] < found[30.0]  # a tighter budget: a higher threshold, a smaller student
    assert all(torch.equal(before[k], v) for k, v in context.supernet.state_dict().items())  # a copy trained
    with pytest.raises(UserError, match="slim trains gates on a weight-sharing supernet"):
        run_strategy("slim", objective(), 5, {}, context=None)


def test_cream_board_scores_only_the_board_paths_that_fit(tmp_path):
    rng = random.Random(1)
    archs = [json.loads(json.dumps(SPACE.sample(rng))) for _ in range(10)]  # plain keys, as cream saves them
    path = tmp_path / "c.pt"
    save_checkpoint({"model": {}, "extra": {"board": [{"arch": a, "acc": 1.0, "mflops": 1.0} for a in archs]}}, path)
    obj = objective(15.0)
    rows = run_strategy("cream-board", obj, 100, {}, checkpoint=str(path))
    fitting = [json.dumps(a, sort_keys=True) for a in archs if SPACE.flops(a) <= 15e6]
    assert sorted(json.dumps(r["arch"], sort_keys=True) for r in rows) == sorted(fitting) and fitting
    save_checkpoint({"model": {}}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="holds no board .* supernet.mode cream"):
        run_strategy("cream-board", objective(), 5, {}, checkpoint=str(tmp_path / "plain.pt"))
    with pytest.raises(UserError, match="none of the board's 10 paths fits"):
        run_strategy("cream-board", objective(0.5 + SPACE.flops(SPACE.min_arch()) / 1e6), 5, {}, checkpoint=str(path))


def test_reinforce_is_seeded():
    a, b = objective(), objective()
    run_strategy("reinforce", a, 20, seed=3)
    run_strategy("reinforce", b, 20, seed=3)
    assert list(a.cache) == list(b.cache)


def test_strategies_bench_measures_regret_against_the_exact_optimum(dna_tables, tmp_path):
    from nas_kd.bench.strategies import bench_strategies, best_curve, write_report

    assert best_curve([3.0, 2.0, 2.5, 1.0], 6) == [3.0, 2.0, 2.0, 1.0, 1.0, 1.0]
    payload = bench_strategies(dna_tables, ["random", "reinforce"], [0.5], seeds=2, trials=12)
    b = payload["budgets"]["0.5"]
    for s in b["strategies"].values():
        assert all(r >= -1e-9 for cv in s["curves"] for r in cv)  # nothing beats the exact optimum
        assert all(cv[i] >= cv[i + 1] for cv in s["curves"] for i in range(11))  # best so far never worsens
        assert set(s["regret_mean"]) == {"10", "12"}
    write_report({**payload, "command": "x", "git_commit": "y"}, tmp_path / "bench.json")
    assert "| reinforce |" in (tmp_path / "bench.md").read_text() and (tmp_path / "bench.png").exists()
