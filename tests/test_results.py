"""The pages say what the committed records support: each table's comparisons recomputed here with scipy, from the
records, are the ones the generated page prints."""
import json
import re
from pathlib import Path

import pytest
from scipy import stats as sp

from nas_kd.results import strategies

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs/results.md").read_text()


def _holm(ps: dict[str, float]) -> dict[str, float]:
    order, out, running = sorted(ps, key=ps.get), {}, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (len(ps) - i) * ps[k]))
        out[k] = running
    return out


def _section(title: str) -> str:
    return PAGE.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_distillation_page_prints_welch_holm_p_values_from_the_records():
    d = json.loads((ROOT / "results/distill_fmnist.json").read_text())
    section = _section("Distillation methods")
    for ref, column in (("scratch", 3), ("kd", 4)):
        ps = {n: sp.ttest_ind(r["seeds"], d["rows"][ref]["seeds"], equal_var=False).pvalue
              for n, r in d["rows"].items() if n != ref and len(r["seeds"]) > 1}  # one seed: nothing to test
        adjusted = _holm(ps)
        for name, p in adjusted.items():
            row = next(line for line in section.splitlines() if line.startswith(f"| `{name}`"))
            cell = row.split(" | ")[column]
            assert f"(p {p:.2g})" in cell, (name, ref, cell)
            assert cell.startswith("**") == (p < 0.05), (name, ref, cell)
        for name in (n for n, r in d["rows"].items() if len(r["seeds"]) == 1):  # shown, not tested
            row = next(line for line in section.splitlines() if line.startswith(f"| `{name}`"))
            assert row.split(" | ")[column] == "-", (name, row)
    assert "*" not in section.replace("**", "")  # no star rule
    # the rows that are not the table's student say so, with their size from the records
    ta = json.loads((ROOT / "results/distill_fmnist/ta-s0.json").read_text())
    assert f"`ta` ({ta['mflops']:.2f} MFLOPs)" in section and f"{ta['params']:,}-parameter" in section
    assert "`dfa`: dfa runs a validation batch" in section and "`adanas`: multi_teacher fits" in section


def test_the_supernet_modes_page_tests_every_row_against_the_default():
    d = json.loads((ROOT / "results/supernet_modes.json").read_text())
    section = _section("Supernet training modes side by side")
    ref = "teacher_alpha_div"
    for i, s in enumerate(("max", "min", "median")):
        groups = {n: [p[s] for p in r["per_seed"] if p[s] is not None] for n, r in d["rows"].items()}
        ps = {n: sp.ttest_ind(g, groups[ref], equal_var=False).pvalue for n, g in groups.items()
              if n != ref and len(g) > 1}
        for name, p in _holm(ps).items():
            row = next(line for line in section.splitlines() if line.startswith(f"| {name} | ") and "(p " in line)
            assert f"(p {p:.2g})" in row.split(" | ")[1 + i], (name, s)


def test_the_data_free_page_counts_the_images_each_row_trained_on():
    d = json.loads((ROOT / "results/datafree_fmnist.json").read_text())
    section = _section("Data-free distillation")
    for row, synthesis in d["syntheses"].items():
        n = synthesis["num_images"]
        assert re.search(rf"\| {row} \| {d['rows'][row]['method']} \| {n - n // 10:,} \|", section)
    p = sp.ttest_ind(d["rows"]["synthetic_kd"]["seeds"], d["rows"]["real_kd"]["seeds"], equal_var=False).pvalue
    assert f"(p {p:.2g})" in section


@pytest.mark.parametrize("same", [0, 3, 10])
def test_strategies_that_share_their_first_trials_are_said_to_be_one_measurement(same):
    curve = [5.0, 4.0, 3.0, 3.0, 2.0, 2.0, 1.0, 1.0, 1.0, 0.5]
    other = curve[:same] + [c + 0.1 for c in curve[same:]]
    d = {"checkpoints": [2, 5, 10], "budgets": {"0.1": {"strategies": {"random": {"curves": [curve, curve]},
                                                                       "evolution": {"curves": [other, other]}}}}}
    pairs = strategies.shared_trials(d)
    if same < 2:
        assert pairs == {} and strategies.shared_note(d) == ""
    else:
        assert pairs == {("random", "evolution"): same}
        assert f"columns up to {max(c for c in (2, 5, 10) if c <= same)} trials" in strategies.shared_note(d)


@pytest.mark.parametrize("study", ["results/search_quality_2k", "results/search_quality"])
def test_the_search_quality_page_prints_welch_holm_p_values_from_the_acceptance_records(study):
    summary = json.loads((ROOT / study / "summary.json").read_text())
    files = summary.get("acceptances", {}).get("files", {})
    if not files:
        pytest.skip(f"{study} has no acceptances")
    section = PAGE.split(f"### `{study}`\n", 1)[1].split("\n### ", 1)[0]
    by_method: dict[tuple[str, str], dict[str, float]] = {}
    for name, stats in files.items():
        picks = json.loads((ROOT / study / f"{name}.json").read_text())["picks"]
        for other, p in stats["welch_p"].items():  # each stored p is scipy's Welch test on the records' seeds
            assert p == pytest.approx(sp.ttest_ind(picks["searched"]["accs"], picks[other]["accs"],
                                                   equal_var=False).pvalue, rel=1e-9), (name, other)
            if "holm_p" in stats:
                by_method.setdefault((stats["method"], other), {})[name] = p
        row = next(line for line in section.splitlines() if line.startswith(f"| `{name}` |"))
        shown = stats.get("holm_p") or stats["welch_p"]
        assert all(f"(p {p:.3f})" in row for p in shown.values()), (name, row)
    for (_, other), family in by_method.items():  # Holm over the budgets of one method, per compared pick
        for name, adjusted in _holm(family).items():
            assert files[name]["holm_p"][other] == pytest.approx(adjusted), (name, other)
    assert "single test detects" in section


def test_the_int8_page_shows_the_records_rows_and_says_how_they_were_timed():
    d = json.loads((ROOT / "results/quantize_fmnist.json").read_text())
    section = _section("The student in int8")
    fp32 = {r["engine"]: r for r in d["rows"].values() if r["graph"] == "fp32"}
    for r in d["rows"].values():
        row = next(line for line in section.splitlines() if line.startswith(f"| {r['engine']} | {r['graph']} |"))
        for b in (1, 32):  # every speed-up recomputed from the times, per pass
            shown = [f / t for f, t in zip(fp32[r["engine"]][f"latency_ms_b{b}"], r[f"latency_ms_b{b}"])]
            assert r[f"speedup_vs_own_fp32_b{b}"] == pytest.approx(shown)
            assert " / ".join(f"{t:.3f}" for t in r[f"latency_ms_b{b}"]) in row
        assert " ; ".join(" / ".join(f"{v:.2f}" for v in r[f"speedup_vs_own_fp32_b{b}"]) for b in (1, 32)) in row
        assert f"| {r['int8_convs'][0]} / {r['int8_convs'][1]} |" in row
        assert len(r["accs"]) == (d["qat_seeds"] if r["graph"] == "qat_kd_int8" else 1)
    assert d["shipped"]["row"] in d["rows"] and f"Shipped: `{d['shipped']['row']}`" in section
    assert "first pass / retest" in section and d["latency_estimator"] in section