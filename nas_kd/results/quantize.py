"""The int8 table (``nas-kd quantize --results R``): its one rendering, used by ``R.md`` and by ``docs/results.md``."""
from __future__ import annotations

from typing import Any

from nas_kd.results import pm, source, table


def lines(d: dict[str, Any], name: str) -> list[str]:
    """The fp32 and int8 graphs' accuracy, latency and size, how they were timed, and each int8 graph's agreement
    with its fake-quantised PyTorch model."""
    estimator = d.get("latency_estimator")
    timing = (f"ms per batch, {estimator}, on {d['threads']} threads" if estimator else
              f"median ms per batch on {d['threads']} threads, timed before the current latency protocol (onnxruntime "
              "sessions left spinning between runs, which distorts batch-1 times): not re-measured since")
    rows = [[n, pm(r["acc_mean"], r["acc_std"]) + (f" ({len(r['accs'])} seeds)" if r["acc_std"] is not None else ""),
             f"{r['latency_ms_b1']:.3f}", f"{r['latency_ms_b32']:.3f}",
             f"{r['speedup_vs_fp32_b1']:.2f}x / {r['speedup_vs_fp32_b32']:.2f}x", f"{r['size_kb']:.0f}"]
            for n, r in d["rows"].items()]
    checks = [d["rows"]["ptq_int8"]["check_vs_fake_quant"], *d["rows"]["qat_kd_int8"]["checks"]] \
        if "ptq_int8" in d["rows"] and "qat_kd_int8" in d["rows"] else []
    out = [f"Student `{d['student']}`; {d['accuracy_kind']}; latency: {timing}; the graphs timed in interleaved "
           f"rounds of one run (compare the ratios, not the times); QAT+KD: {d['qat_epochs']} epochs at lr "
           f"{d['qat_lr']} with `{d['distill']}`.", "",
           *table(["model", "test acc. (%)", "ms, batch 1", "ms, batch 32", "speed-up b1 / b32", "size (KB)"], rows), ""]
    if checks:
        out += ["Each int8 graph against the fake-quantised PyTorch model on 1,000 validation images: top-1 agreement "
                + ", ".join(f"{100 * c['top1_agreement']:.1f} %" for c in checks) + "; mean relative logit error "
                + ", ".join(f"{c['relative_logit_error']:.3f}" for c in checks) + ".", ""]
    return [*out, source(d, name)]
