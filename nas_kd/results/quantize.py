"""The int8 table (``nas-kd quantize --results R``): its one rendering, used by ``R.md`` and by ``docs/results.md``."""
from __future__ import annotations

from typing import Any

from nas_kd.results import pm, source, table


def _pair(values: list[float], fmt: str) -> str:
    return " / ".join(format(v, fmt) for v in values)


def lines(d: dict[str, Any], name: str) -> list[str]:
    """Every (engine, graph) row's accuracy, kernels, latency (first pass / retest) and speed-ups, how they were
    timed, each int8 graph's agreement with its fake-quantised PyTorch model, and the shipped row."""
    rows = []
    for key, r in d["rows"].items():
        n = len(r["accs"])
        int8, convs = r["int8_convs"]
        rows.append([r["engine"], r["graph"], pm(r["acc_mean"], r["acc_std"]) + (f" ({n} seeds)" if n > 1 else ""),
                     f"{int8} / {convs}", _pair(r["latency_ms_b1"], ".3f"), _pair(r["latency_ms_b32"], ".3f"),
                     _pair(r["speedup_vs_own_fp32_b1"], ".2f") + " ; " + _pair(r["speedup_vs_own_fp32_b32"], ".2f"),
                     (_pair(r["speedup_vs_onnxruntime_fp32_b1"], ".2f") + " ; "
                      + _pair(r["speedup_vs_onnxruntime_fp32_b32"], ".2f")) if "speedup_vs_onnxruntime_fp32_b1" in r
                     else "-", f"{r['size_kb']:.0f}"])
    out = [f"Student `{d['student']}`; {d['accuracy_kind']} on {d['test_images']:,} test images; latency in ms per "
           f"batch on {d['threads']} threads, {d['latency_estimator']}: each cell is first pass / retest, and the times "
           f"are comparable only inside a pass (the ratios carry over, the times drift with the shared machine). "
           f"Int8 convs: convolutions the engine runs as integer kernels after its own graph optimisation, of all "
           f"convolutions. QAT+KD: {d['qat_epochs']} epochs at lr {d['qat_lr']} with `{d['distill']}`.", "",
           *table(["engine", "graph", "test acc. (%)", "int8 convs", "ms, batch 1", "ms, batch 32",
                   "speed-up vs own fp32, b1 ; b32", "vs onnxruntime fp32, b1 ; b32", "size (KB)"], rows), ""]
    checks = [(k, c) for k, r in d["rows"].items() for c in r["checks"]]
    if checks:
        out += ["Each int8 graph against its fake-quantised PyTorch model on 1,000 validation images (top-1 agreement, "
                "mean relative logit error): "
                + "; ".join(f"{k} {100 * c['top1_agreement']:.1f} %, {c['relative_logit_error']:.3f}" for k, c in checks)
                + ".", ""]
    s = d["shipped"]
    r, fp32 = d["rows"][s["row"]], d["rows"][f"{d['rows'][s['row']]['engine']}/fp32"]
    out += [f"Shipped: `{s['row']}` ({s['rule']}): {100 * r['acc_mean']:.2f} % against {100 * fp32['acc_mean']:.2f} % "
            f"in fp32 on the same engine; {_pair(r['speedup_vs_own_fp32_b32'], '.2f')}x its own fp32 at batch 32 and "
            f"{_pair(r['speedup_vs_own_fp32_b1'], '.2f')}x at batch 1 (first pass / retest).", "", source(d, name)]
    return out
