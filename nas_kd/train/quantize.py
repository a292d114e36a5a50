"""Quantisation-aware distillation of an exported student and its int8 report (``nas-kd quantize``,
``pipeline.quantize``): the training side of :mod:`nas_kd.quantize`, whose primitives (BatchNorm folding, fake
quantisation, onnxruntime's static int8 quantiser, checks and timing) it drives."""
from __future__ import annotations

import functools
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from nas_kd.job import Job
from nas_kd.latency import time_runs
from nas_kd.quantize import (
    agreement,
    export_float,
    fold_batchnorm,
    onnx_accuracy,
    prepare_qat,
    quantise_onnx,
    session,
    strip_qat,
    with_minmax_ranges,
)
from nas_kd.results.quantize import lines as quantize_lines
from nas_kd.locks import holding

SAMPLES = 20  # each latency: the fastest of this many samples (nas_kd.latency.time_runs)


@holding("out")
def quantize_student(job: Job, student_dir: str | Path, out: str | Path, *, terms: list = (), ce_weight: float = 1.0,
                     seeds: int, qat_epochs: int, qat_lr: float, calibration_batches: int, threads: int = 2,
                     show_progress: bool = True) -> dict:
    """fp32, post-training int8 and QAT+KD int8 (``seeds`` runs of ``qat_epochs`` epochs on the
    :class:`~nas_kd.job.Job`, with ``ce_weight`` x cross-entropy and the distillation ``terms``) of the exported
    student in ``student_dir``: test accuracy with onnxruntime, batch-1 and
    batch-32 latency on ``threads`` threads (interleaved in one run), size on disk; the int8 graphs are checked
    against the fake-quantised PyTorch model. Writes ``<out>/*.onnx``; returns the result's payload."""
    from nas_kd.data import calibration_batches as batches_of
    from nas_kd.export import load_subnet
    from nas_kd.students import Student, stage_names
    from nas_kd.train.distill import train_students

    student = load_subnet(student_dir).eval()  # a wrong --student is refused before --out is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = job.data
    shape = tuple(data.input_shape)
    calib = [x for _, (x, _) in zip(range(calibration_batches), batches_of(data, job.batching.batch_size, job.seed).epoch(0))]
    test_x, test_y = data.test.x, data.test.y
    folded = fold_batchnorm(student)  # the float graph, and the template the QAT weights are stripped into
    fp32 = export_float(folded, out / "fp32.onnx", shape)
    ptq = quantise_onnx(fp32, out / "ptq_int8.onnx", calib)
    ptq_check = agreement(session(ptq, threads), with_minmax_ranges(prepare_qat(student), calib), data.val.x[:1000])
    rows: dict[str, Any] = {
        "fp32": {"accs": [onnx_accuracy(session(fp32, threads), test_x, test_y)], "file": str(fp32)},
        "ptq_int8": {"accs": [onnx_accuracy(session(ptq, threads), test_x, test_y)], "file": str(ptq),
                     "check_vs_fake_quant": ptq_check},
        "qat_kd_int8": {"accs": [], "seeds": [], "file": None, "checks": []},
    }
    for seed in range(seeds):
        model = prepare_qat(student)
        run = job.derive(job.run.at(out / f"qat-s{seed}"), seed=seed,
                         train={"epochs": qat_epochs, "lr": qat_lr, "warmup_epochs": 0.0})
        final = train_students(run, Student(lambda *_: model, {"qat_of": str(student_dir)}, stage_names(student), False),
                               terms=terms, ce_weight=ce_weight, show_progress=show_progress)
        path = quantise_onnx(export_float(strip_qat(model, folded), out / f"qat-s{seed}_fp32.onnx", shape),
                             out / f"qat-s{seed}_int8.onnx", calib)
        q = rows["qat_kd_int8"]
        q["accs"].append(onnx_accuracy(session(path, threads), test_x, test_y))
        q["seeds"].append(seed)
        q["checks"].append(agreement(session(path, threads), model, data.val.x[:1000]))
        q["fake_quant_test_acc"] = q.get("fake_quant_test_acc", []) + [final["test_acc"]]
        q["file"] = q["file"] or str(path)
    sessions = {name: session(r["file"], threads, spinning=False) for name, r in rows.items()}  # as latency.runner
    latency = {}
    for b in (1, 32):  # the graphs timed together, in rounds: compare them as ratios
        feed = {"images": np.random.default_rng(0).standard_normal((b, *shape)).astype(np.float32)}
        runs = [functools.partial(s.run, None, feed) for s in sessions.values()]
        latency[b] = dict(zip(sessions, time_runs(runs, repeats=SAMPLES)))
    for name, r in rows.items():
        r |= {"acc_mean": statistics.mean(r["accs"]), "acc_std": statistics.stdev(r["accs"]) if len(r["accs"]) > 1 else None,
              "latency_ms_b1": latency[1][name], "latency_ms_b32": latency[32][name],
              "speedup_vs_fp32_b1": latency[1]["fp32"] / latency[1][name],
              "speedup_vs_fp32_b32": latency[32]["fp32"] / latency[32][name],
              "size_kb": Path(r["file"]).stat().st_size / 1024, "runtime": "onnxruntime CPU"}
    return {"student": str(student_dir), "threads": threads, "latency_estimator": f"the fastest of {SAMPLES} samples",
            "qat_epochs": qat_epochs, "qat_lr": qat_lr,
            "calibration_images": sum(len(x) for x in calib), "distill": [t.spec() for t in terms],
            "accuracy_kind": "test accuracy of the onnxruntime graph", "rows": rows}


def write_markdown(p: dict[str, Any], path: Path) -> None:
    """The quantisation table (:func:`nas_kd.results.quantize.lines`, as ``docs/results.md`` shows it)."""
    text = ["# The student in int8 (onnxruntime, CPU)", "", *quantize_lines(p, str(path.with_suffix(".json")))]
    path.write_text("\n".join(text) + "\n")

