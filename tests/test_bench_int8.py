"""``nas-kd bench int8``: its table file is checked before any work, and its summary tests what the records hold."""
import json

import pytest
from scipy import stats as sp

from nas_kd.bench.int8 import arms, load_spec, summarise
from nas_kd.errors import UserError
from nas_kd.results.int8 import lines

TABLES = {1: "results/latency_search_int8/table_b1.json", 32: "results/latency_search_int8/table_b32.json"}
SPEC = {"recipe": "recipes/quickstart.yaml", "seeds": [0, 1, 2], "runtime": "openvino-int8", "tables": TABLES,
        "runs": "runs/x", "out": "results/x"}


def _write(tmp_path, **changes):
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps({k: v for k, v in {**SPEC, **changes}.items() if v is not None}))
    return path


@pytest.mark.parametrize("changes, said", [
    ({"runtime": "torch"}, "runtime 'torch' is not one of openvino-int8, onnxruntime-int8"),
    ({"runtime": "onnxruntime-int8"}, "was timed with openvino-int8 at batch 1, not onnxruntime-int8 at batch 1"),
    ({"tables": {32: TABLES[1]}}, "was timed with openvino-int8 at batch 1, not openvino-int8 at batch 32"),
    ({"seeds": [0]}, "seeds is a list of at least 2 integers"),
    ({"out": None}, "an int8 table has the keys"),
    ({"set": ["pipeline.supernet_checkpoint=null"]}, "needs pipeline.supernet_checkpoint"),
])
def test_a_bad_table_file_is_refused_in_one_line_before_any_work(tmp_path, changes, said):
    with pytest.raises(UserError, match=said.replace("(", r"\(")):
        load_spec(_write(tmp_path, **changes))


def test_the_summary_tests_the_int8_search_against_both_other_arms_of_its_budget_with_holm():
    spec = {**SPEC, "set": [], "threads": 2, "pass_seconds": None}
    accs = {"flops": [0.930, 0.932, 0.931], "int8-b1": [0.934, 0.935, 0.937], "maxflops-b1": [0.931, 0.936, 0.929],
            "int8-b32": [0.925, 0.927, 0.926], "maxflops-b32": [0.940, 0.941, 0.939]}
    records = {}
    for arm in arms(spec):
        records[f"search-{arm}"] = {"arch": {"a": arm}, "mflops": 5.0, "params": 1000, "budget_mflops": 5.2,
                                    "budget_ms": None if arm == "flops" else 1.0, "predicted_ms": {"1": 0.1, "32": 1.0},
                                    "search": {}}
        for s, a in zip(spec["seeds"], accs[arm]):
            records[f"{arm}-s{s}"] = {"seed": s, "fp32_test_acc": a + 0.001, "ptq_int8_test_acc": a - 0.01,
                                      "int8_test_acc": a, "int8_convs": [12, 13], "train_images": 600, "engine": "openvino",
                                      "wall_seconds": 1.0, "git_commit": "c"}
    times = {"flops": [0.10, 0.20], "int8-b1": [0.09, 0.18], "maxflops-b1": [0.11, 0.21],
             "int8-b32": [0.5, 0.6], "maxflops-b32": [0.45, 0.7]}
    records["latency"] = {"engine": "openvino", "threads": 2, "seed": 0, "pass_seconds": 30, "estimator": "e",
                          "command": "c", "git_commit": "c", "wall_seconds": 1.0,
                          "latency_ms": {a: {"b1": t, "b32": [10 * x for x in t]} for a, t in times.items()}}
    d = summarise(spec, records, "t.yaml")
    raw = {(c["arm"], c["against"]): sp.ttest_ind(accs[c["arm"]], accs[c["against"]], equal_var=False).pvalue
           for c in d["comparisons"]}
    assert set(raw) == {("int8-b1", "flops"), ("int8-b1", "maxflops-b1"), ("int8-b32", "flops"),
                        ("int8-b32", "maxflops-b32")}
    order = sorted(raw, key=raw.get)  # Holm over all four
    running, holm = 0.0, {}
    for i, k in enumerate(order):
        running = max(running, min(1.0, (4 - i) * raw[k]))
        holm[k] = running
    for c in d["comparisons"]:
        key = (c["arm"], c["against"])
        assert c["p"] == pytest.approx(raw[key]) and c["p_holm"] == pytest.approx(holm[key])
        assert c["diff"] == pytest.approx(100 * (sum(accs[key[0]]) - sum(accs[key[1]])) / 3)
    verdicts = {(c["arm"], c["against"]): c["verdict"] for c in d["comparisons"]}
    assert verdicts[("int8-b32", "maxflops-b32")] == "lower" and verdicts[("int8-b1", "maxflops-b1")] == "not separable"
    # latency ratios are taken pass by pass against the FLOPs arm timed in the same pass
    assert d["budgets"]["1"]["ratio_to_flops"]["int8-b1"] == pytest.approx([0.9, 0.9])
    assert d["budgets"]["32"]["ratio_to_flops"]["maxflops-b32"] == pytest.approx([4.5, 3.5])
    page = "\n".join(lines(d | {"command": "c", "git_commit": "c"}, "x.json"))
    assert "| `int8-b32` | int8-latency search |" in page and "0.90 / 0.90" in page and "first pass / retest" in page
