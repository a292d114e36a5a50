"""Teacher vs student, as a person reads it at the end of ``nas-kd run``: accuracy, cost, speed, size."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from nas_kd.data import DataBundle
from nas_kd.flops import count_flops, count_params
from nas_kd.job import Teacher
from nas_kd.latency import model_latency_ms


def _size_bytes(model: nn.Module, source: str | None) -> int:
    """The size of the model's weights file (``source``: a file, or an exported subnet's directory); for a model
    given in memory, of its state dict saved the same way."""
    if source is not None and Path(source).exists():
        path = Path(source)
        return (path / "weights.pt" if path.is_dir() else path).stat().st_size
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def _describe(model: nn.Module, data: DataBundle, size_bytes: int, eval_batch_size: int) -> dict[str, Any]:
    from nas_kd.evaluation import evaluate

    shape = (1, *data.input_shape)
    return {"test_acc": evaluate(model, data.test, eval_batch_size)["acc"],
            "mflops": count_flops(model, shape) / 1e6, "params": count_params(model),
            "latency_ms_batch1_cpu": model_latency_ms(model, data.input_shape), "size_bytes": size_bytes}


def compare_models(teacher: Teacher, data: DataBundle, student_dir: Path, eval_batch_size: int) -> dict[str, Any]:
    """``teacher_*`` and ``student_*`` figures (test accuracy, MFLOPs, params, latency, size on disk)."""
    from nas_kd.export import load_subnet

    module = teacher.module()
    t = _describe(module, data, _size_bytes(module, teacher.source), eval_batch_size)
    s = _describe(load_subnet(student_dir), data, (Path(student_dir) / "weights.pt").stat().st_size, eval_batch_size)
    out = {f"teacher_{k}": v for k, v in t.items()} | {f"student_{k}": v for k, v in s.items()}
    out["student_flops_fraction_of_teacher"] = s["mflops"] / t["mflops"]
    out["accuracy_gap_points"] = 100 * (t["test_acc"] - s["test_acc"])
    out["student_faster_than_teacher"] = s["latency_ms_batch1_cpu"] < t["latency_ms_batch1_cpu"]
    finetune = Path(student_dir) / "finetune" / "final.json"
    final = json.loads(finetune.read_text()) if finetune.exists() else {}
    out["student_distill"] = final.get("distill")
    out["student_ce_weight"], out["student_finetune_epochs"] = final.get("ce_weight"), final.get("epochs")
    return out


def choice_lines(r: dict[str, Any]) -> list[str]:
    """What the run chose, a line each: how the student was distilled, and how much of the budget it uses."""
    lines = []
    if r.get("student_distill") is not None:
        terms = " + ".join([f"CE x {r['student_ce_weight']:g}", *(
            f"{t['name']} x {t['weight']:g}" + "".join(f", {k} {v}" for k, v in t.items() if k not in ("name", "weight"))
            for t in r["student_distill"])])
        lines.append(f"distilled: {terms}, {r['student_finetune_epochs']} epochs (the recipe's distill, student.ce_weight "
                     "and pipeline.finetune_epochs)")
    search = r.get("search") or {}
    if search.get("budget_ms") is not None and search.get("best_latency_ms_at_table_speed") is not None:
        used = search["best_latency_ms_at_table_speed"]
        lines.append(f"budget: {used:.3f} of {search['budget_ms']:.3f} ms used ({100 * used / search['budget_ms']:.1f} %,"
                     " measured at the latency table's speed)")
    elif search.get("budget_mflops"):
        lines.append(f"budget: {r['student_mflops']:.2f} of {search['budget_mflops']:.2f} MFLOPs used "
                     f"({100 * r['student_mflops'] / search['budget_mflops']:.1f} %)")
    return lines


def _int8_lines(int8: dict[str, Any] | None) -> list[str]:
    """The shipped int8 student against its engine's fp32 graph (``pipeline.quantize``)."""
    if not int8:
        return []
    key = int8["shipped"]
    q, fp32 = int8[key], int8[f"{key.split('/')[0]}/fp32"]
    slow = [min(q[f"speedup_vs_own_fp32_b{b}"]) for b in (1, 32)]
    return [f"int8 student ({key}, {q['file']}): {100 * q['acc_mean']:.2f} % vs {100 * fp32['acc_mean']:.2f} % in "
            f"fp32; {slow[0]:.2f}x / {slow[1]:.2f}x the fp32 graph's speed at batch 1 / 32 on that engine (slower pass)"
            + ("" if min(slow) > 1 else "; where the speed-up is below 1x, ship the fp32 graph: this student's "
               "layers are too narrow for int8 kernels to pay")]


def print_summary(r: dict[str, Any]) -> None:
    """A short table a person reads, and where the files are."""
    rows = [("test accuracy (%)", "test_acc", lambda v: f"{100 * v:.2f}"), ("MFLOPs", "mflops", lambda v: f"{v:.2f}"),
            ("parameters", "params", lambda v: f"{v:,}"),
            ("latency, batch 1, CPU (ms)", "latency_ms_batch1_cpu", lambda v: f"{v:.2f}"),
            ("size on disk (KB)", "size_bytes", lambda v: f"{v / 1024:.0f}")]
    lines = ["", f"{'':28} {'teacher':>12} {'student':>12}"]
    for label, key, fmt in rows:
        lines.append(f"{label:28} {fmt(r['teacher_' + key]):>12} {fmt(r['student_' + key]):>12}")
    lines += [f"student: {100 * r['student_flops_fraction_of_teacher']:.1f} % of the teacher's FLOPs, "
              f"{r['accuracy_gap_points']:.2f} points below it",
              *([] if r["student_faster_than_teacher"] else [
                  f"note: on this machine the student is NOT faster than the teacher at batch 1 "
                  f"({r['student_latency_ms_batch1_cpu']:.2f} ms vs {r['teacher_latency_ms_batch1_cpu']:.2f} ms): fewer "
                  "FLOPs do not mean less time here. To budget time, search with --budget-ms MS (and a latency "
                  "table) or set pipeline.latency_fraction_of_teacher (e.g. 0.5)."]),
              *choice_lines(r),
              *_int8_lines(r.get("int8")),
              *(f"baseline: the teacher pruned by {name} to {b['mflops']:.2f} MFLOPs and fine-tuned alike: "
                f"{100 * b['test_acc']:.2f} % ({b['network']})" for name, b in r.get("baselines", {}).items()),
              f"files: {r['student_dir']} (arch.json, weights.pt), search plot {r['pareto_plot']}", ""]
    print("\n".join(lines))
