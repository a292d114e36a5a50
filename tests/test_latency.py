"""Latency tables: every block of every arch is in the table, predictions sum it, budgets are respected."""
import json
import random

import pytest
import torch

import search_spaces
from nas_kd.cli import main
from nas_kd.errors import BudgetError, UserError
from nas_kd.inference import installed
from nas_kd.latency import block_key, block_variants, build_table, load_table, predict_ms, require_match
from nas_kd.search import Objective
from conftest import run_strategy

SHAPE = (1, 8, 8)  # tiny inputs: the table is timed in a second or two


@pytest.fixture(scope="module")
def table():
    return build_table(search_spaces.get("resnet", input_shape=SHAPE), repeats=2, warmup=1, min_seconds=0, calibration_archs=0,
                       show_progress=False)


@pytest.mark.parametrize("name", search_spaces.available())
def test_every_block_of_every_arch_is_a_table_entry(name):
    space = search_spaces.get(name, input_shape=(3, 12, 10))
    keys = block_variants(space)
    rng = random.Random(0)
    for arch in [space.max_arch(), space.min_arch()] + [space.sample(rng) for _ in range(30)]:
        size = space.input_shape[1:]
        for blocks in space.spec(arch)["stages"]:
            for b in blocks:
                assert block_key(b, size) in keys
                size = ((size[0] - 1) // b["stride"] + 1, (size[1] - 1) // b["stride"] + 1)


def test_prediction_is_the_sum_of_blocks_stem_and_head(table):
    space = search_spaces.get("resnet", input_shape=SHAPE)
    arch = space.min_arch()
    spec = space.spec(arch)
    size, total = space.input_shape[1:], table["stem_ms"]
    for blocks in spec["stages"]:
        for b in blocks:
            total += table["blocks_ms"][block_key(b, size)]
            size = ((size[0] - 1) // b["stride"] + 1, (size[1] - 1) // b["stride"] + 1)
    total += table["head_ms"][str(spec["head"]["in"])]
    assert table["calibration"] == {"scale": 1.0, "offset": 0.0, "per_block": 0.0, "per_activation": 0.0, "archs": 0, "seed": 0}
    assert predict_ms(space, arch, table) == pytest.approx(total)
    assert space.latency(arch, table) == pytest.approx(total)
    calibrated = {**table, "calibration": {"scale": 2.0, "offset": 0.5}}
    assert space.latency(arch, calibrated) == pytest.approx(2 * total + 0.5)


def test_a_table_for_another_shape_is_refused(table):
    with pytest.raises(UserError, match="latency table is for resnet at 1x8x8.*needs resnet at 1x28x28"):
        require_match(search_spaces.get("resnet"), table)


def test_latency_budget_is_respected_by_every_strategy(table, tmp_path):
    space = search_spaces.get("resnet", input_shape=SHAPE)
    lo = space.latency(space.min_arch(), table)
    rng = random.Random(0)
    budget_ms = max(lo, sorted(space.latency(space.sample(rng), table) for _ in range(9))[3])  # noisy timings
    def score(arch):
        return {"arch": arch, "mflops": space.flops(arch) / 1e6, "q": space.params(arch)}

    for name in ("random", "evolution", "optuna-tpe"):
        obj = Objective(space, score, "q", space.flops(space.max_arch()), budget_ms=budget_ms, latency_table=table)
        rows = run_strategy(name, obj, 12, {}, seed=0, storage=f"sqlite:///{tmp_path}/{name}.db", study_name="t")
        assert rows and all(space.latency(r["arch"], table) <= budget_ms and r["latency_ms"] <= budget_ms for r in rows)
    with pytest.raises(BudgetError, match="below the fastest resnet arch"):
        Objective(space, score, "q", 1e9, budget_ms=lo / 2, latency_table=table)
    with pytest.raises(BudgetError, match="needs a latency table"):
        Objective(space, score, "q", 1e9, budget_ms=lo)


def test_latency_table_and_check_commands(tmp_path, capsys):
    out = tmp_path / "table.json"
    assert main(["latency-table", "--space", "mbv2", "--input-shape", "1", "8", "8", "--repeats", "1", "--min-seconds", "0",
                 "--calibration-archs", "2", "--threads", "1", "--out", str(out)]) == 0
    table = load_table(out)
    assert table["space"] == "mbv2" and table["threads"] == 1 and table["command"] and table["git_commit"]
    assert table["calibration"]["archs"] == 2
    capsys.readouterr()
    assert main(["latency-check", "--table", str(out), "--num-archs", "3", "--retest", "--out",
                 str(tmp_path / "check.json")]) == 0
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["num_archs"] == 3 and 0 <= check["within_10pct"] <= 1 and len(check["archs"]) == 3
    # timed again in a fresh process: the measurement's own repeatability
    assert all(r["retest_ms"] > 0 for r in check["archs"]) and check["retest_mape"] >= 0
    assert -1 <= check["retest_spearman"] <= 1
    (tmp_path / "bad.json").write_text("{}")
    assert main(["latency-check", "--table", str(tmp_path / "bad.json")]) == 2
    assert "not a latency table" in capsys.readouterr().err


def test_a_table_timed_elsewhere_is_refused_for_a_search(table):
    from nas_kd.errors import UserError
    from nas_kd.latency import RUNTIME, require_here

    assert table["runtime"] == RUNTIME
    require_here(table)  # timed here: fine
    with pytest.raises(UserError, match="timed with torch on 'Other CPU 9000'.*build a table here"):
        require_here({**table, "device_name": "Other CPU 9000"})
    with pytest.raises(UserError, match="timed with onnxruntime"):
        require_here({**table, "runtime": "onnxruntime"})


def test_an_int8_onnxruntime_table_predicts_and_measures_with_its_runtime(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "ort.json"
    assert main(["latency-table", "--space", "resnet", "--input-shape", "1", "8", "8", "--repeats", "1", "--min-seconds", "0",
                 "--calibration-archs", "2", "--threads", "1", "--runtime", "onnxruntime-int8", "--out", str(out)]) == 0
    table = load_table(out)
    assert table["runtime"] == "onnxruntime-int8" and all(v > 0 for v in table["blocks_ms"].values())
    from nas_kd.errors import UserError
    from nas_kd.latency import measured_ms, require_here

    space = search_spaces.get("resnet", input_shape=(1, 8, 8))
    assert measured_ms(space, [space.min_arch()], table)[0] > 0  # timed with onnxruntime-int8, as the table was
    require_here(table, "onnxruntime-int8")
    with pytest.raises(UserError, match="timed with onnxruntime-int8 .* this search deploys with onnxruntime"):
        require_here(table, "onnxruntime")


def test_the_calibration_recovers_per_block_costs(table):
    from nas_kd import latency

    table = dict(table)  # the module's table keeps its identity calibration
    space = search_spaces.get("resnet", input_shape=SHAPE)
    truth = (2.0, 0.3, 0.5, 1.0)  # measured = 2 x summed + 0.3 x blocks + 0.5 x activations + 1

    def fake(arch):
        s, n, a = latency.spec_features(space.spec(arch), table)
        return truth[0] * s + truth[1] * n + truth[2] * a + truth[3]

    archs = latency.calibration_set(space, 12, 0)
    table["calibration"] = latency.calibrate(space, table, archs, [fake(a) for a in archs])
    cal = table["calibration"]
    assert cal["scale"] == pytest.approx(2.0) and cal["offset"] == pytest.approx(1.0, abs=1e-6)
    assert cal["per_block"] == pytest.approx(0.15) and cal["per_activation"] == pytest.approx(0.25)
    rng = random.Random(3)
    for arch in [space.sample(rng) for _ in range(5)]:  # the prediction is the model, and stays a sum over blocks
        assert latency.predict_ms(space, arch, table) == pytest.approx(fake(arch))


def test_runs_are_timed_in_shuffled_rounds_and_the_fastest_sample_is_kept(monkeypatch):
    from nas_kd import latency

    calls, clock = [], [0.0]
    slow = {"a": [5.0] * 13 + [1.0] * 10, "b": [2.0] * 23}  # "a" is slow in its warm-up and first 5 rounds, then fast

    def run(name):
        def call():
            calls.append(name)
            clock[0] += slow[name].pop(0)
        return call

    monkeypatch.setattr(latency.time, "perf_counter", lambda: clock[0])
    a, b = latency.time_runs([run("a"), run("b")], repeats=10, warmup=2, sample_seconds=0.0)
    assert (a, b) == (1000.0, 2000.0)  # a's fast calls came in a later round; the fastest sample is the estimate
    rounds = calls[6:]  # after the warm-up (2 + 1 call each): per round one untimed and one timed call of each
    assert len(rounds) == 40 and all(sorted(set(rounds[i:i + 4])) == ["a", "b"] for i in range(0, 40, 4))
    assert any(rounds[i] != rounds[0] for i in range(0, 40, 4))  # the order is shuffled from round to round
    calls.clear()
    slow["b"] = [2.0] * 100  # one call: 2 s of the fake clock; a round: 4 s
    latency.time_runs([run("b")], repeats=2, warmup=0, sample_seconds=0.0, min_seconds=15)
    assert len(calls) == 1 + 2 * 4  # rounds go on until the session has lasted min_seconds


@pytest.mark.parametrize("engine", installed())
def test_the_int8_runtimes_time_quantised_graphs_with_the_image_fed_conv_in_float(engine, monkeypatch):
    from nas_kd import inference
    from nas_kd.latency import runner, time_runs
    from nas_kd.layers import ConvBN

    graphs = []
    real_load = inference.load
    monkeypatch.setattr(inference, "load", lambda graph, *a, **k: graphs.append(graph) or real_load(graph, *a, **k))
    net = torch.nn.Sequential(ConvBN(1, 8, 3), ConvBN(8, 8, 3))
    x = torch.randn(1, 1, 6, 6)
    runs = [runner(net, x, f"{engine}-int8"), runner(net, x, f"{engine}-int8", image_input=False)]
    assert all(t > 0 for t in time_runs(runs, repeats=1, warmup=0))
    kernels = [inference.int8_share(real_load(g, engine, 1).kernels(), engine) for g in graphs]
    assert kernels == [(1, 2), (2, 2)]  # the stem stays float when fed the image; a block's first conv does not


def test_the_recipe_names_every_runtime():
    import typing

    from nas_kd.config import SearchConfig
    from nas_kd.latency import RUNTIMES

    assert typing.get_args(typing.get_type_hints(SearchConfig)["runtime"]) == RUNTIMES


def test_a_reference_arch_budget_is_its_time_beside_the_anchors_in_the_same_session(table, monkeypatch):
    from nas_kd import latency
    from nas_kd.latency import ANCHORS, anchor_archs, reanchored

    space = search_spaces.get("resnet", input_shape=SHAPE)
    reference = space.sample(random.Random(3))
    sessions = []

    def timer(space, archs, _table):  # one session: the machine 1.5x slower than the table, the reference 1.2 ms
        sessions.append(archs)
        return [1.5 * predict_ms(space, a, table) for a in archs[:ANCHORS]] + [1.2] * (len(archs) - ANCHORS)

    monkeypatch.setattr(latency, "measured_ms", timer)
    got = reanchored(space, table, None, reference)
    # the anchors are those nearest the reference's prediction, timed with it in one session; its time is the budget
    assert sessions == [anchor_archs(space, table, predict_ms(space, reference, table)) + [reference]]
    assert got["reanchored"]["budget_ms"] == 1.2 and got["reanchored"]["budget_arch"] == reference
    assert got["reanchored"]["speed"] == pytest.approx(1.5)
    assert predict_ms(space, reference, got) == pytest.approx(1.5 * predict_ms(space, reference, table))
    with pytest.raises(ValueError):
        reanchored(space, table, 1.0, reference)
