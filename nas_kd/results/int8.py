"""The int8-search table (``nas-kd bench int8 --table T``): its one rendering, used by ``<out>.md`` and by
``docs/results.md``."""
from __future__ import annotations

import statistics
from typing import Any

from nas_kd.results import source, table

KIND = {"flops": "FLOPs search, then quantised", "int8": "int8-latency search", "maxflops": "most FLOPs that fits"}


def _pm(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.2f} +- {100 * statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def _pair(values: list[float] | None, fmt: str) -> str:
    return "-" if not values else " / ".join(format(v, fmt) for v in values)


def lines(d: dict[str, Any], name: str) -> list[str]:
    """Per batch size: the budget, each arm's pick, accuracies and int8 latency (first pass / retest, and as a ratio
    to the FLOPs arm's in the same pass); then the Holm-corrected comparisons and what they allow to say."""
    s = d["schedule"]
    out = [f"Runtime `{d['runtime']}`; seeds {d['seeds']} of the fine-tune ({s['finetune_epochs']} epochs at lr "
           f"{s['finetune_lr']}, BatchNorm recalibrated) and of one QAT+KD run ({s['qat_epochs']} epoch(s) at lr "
           f"{s['qat_lr']}), as `nas-kd run` with `pipeline.quantize` does, from the supernet `{s['supernet']}`. The "
           f"FLOPs arm is the recipe's search under {s['flops_budget_fraction_of_teacher']:g} of the teacher's FLOPs; "
           "its pick is the other searches' `search.budget_arch`: each times it beside its table's anchors when it "
           "starts and takes its latency as the budget, so the other arms compete with it at its own int8 latency "
           "(their final checks hold them to it). Each search ran once. Accuracy: test accuracy (%) of the graph run by the "
           "engine, mean +- s.d. over seeds."]
    lat = d.get("latency")
    if lat:
        out[0] += (f" Latency: ms per batch on {lat['threads']} threads of `{lat['engine']}`, the first seed's int8 "
                   f"graphs, {lat['estimator']}; each cell is first pass / retest.")
    for b, budget in d["budgets"].items():
        said = "; ".join(f"{ms:.3f} ms for `{a}`" for a, ms in budget["budget_ms"].items())
        out += ["", f"**Batch {b}**: budget (the FLOPs arm's pick, timed when each search started): {said}.", ""]
        rows = []
        for arm in budget["arms"]:
            r = d["rows"][arm]
            kind = KIND[arm.split("-")[0]]
            rows.append([f"`{arm}`", kind, f"{r['mflops']:.2f}", f"{r['params']:,}", f"{r['predicted_ms'][b]:.3f}",
                         _pm(r["fp32_accs"]), _pm(r["int8_accs"]), len(r["int8_accs"]),
                         f"{r['int8_convs'][0]} / {r['int8_convs'][1]}",
                         _pair(budget["latency_ms"].get(arm), ".3f"), _pair(budget["ratio_to_flops"].get(arm), ".2f")])
        out += table(["arm", "searched as", "MFLOPs", "params", "predicted ms", "fp32 acc.", "int8 acc.", "seeds",
                      "int8 convs", f"int8 ms, b{b}", "ms / FLOPs arm's"], rows)
    if d["comparisons"]:
        out += ["", f"Int8 test accuracy, the int8-searched arm minus another arm of its budget: Welch's test, Holm over "
                    f"these {len(d['comparisons'])} comparisons; \"level\" needs TOST p < 0.05 at +-{100 * d['margin']:.1f} "
                    "points.", ""]
        out += table(["comparison", "difference (points)", "95 % CI", "p (Holm)", "TOST p", "verdict"],
                     [[f"`{c['arm']}` - `{c['against']}`", f"{c['diff']:+.2f}",
                       f"{c['ci95'][0]:+.2f} to {c['ci95'][1]:+.2f}", f"{c['p_holm']:.2g}", f"{c['tost_p']:.2g}",
                       c["verdict"]] for c in d["comparisons"]])
    if d.get("detectable_difference"):
        out += ["", f"At {min(len(r['int8_accs']) for r in d['rows'].values())} seeds and the arms' median seed s.d., "
                    f"one test detects a difference of {100 * d['detectable_difference']:.2f} points with 80 % power "
                    "at p < 0.05 (before Holm)."]
    return [*out, "", source(d, name)]
