"""Quantisation-aware distillation of an exported student and its int8 report (``nas-kd quantize``,
``pipeline.quantize``): the training side of :mod:`nas_kd.quantize`, whose primitives (BatchNorm folding, fake
quantisation, onnxruntime's static int8 quantiser, checks and timing) it drives."""
from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nas_kd.inference import installed, int8_share, load, require
from nas_kd.job import Job
from nas_kd.latency import MIN_SECONDS, passes_with_retest
from nas_kd.locks import holding
from nas_kd.quantize import (
    accuracy,
    agreement,
    export_float,
    fold_batchnorm,
    prepare_qat,
    quantise_onnx,
    strip_qat,
    with_minmax_ranges,
)
from nas_kd.results.quantize import lines as quantize_lines

SAMPLES = 20  # each latency: the fastest of at least this many samples (nas_kd.latency.time_runs)
BATCHES = (1, 32)
GRAPHS = ("fp32", "ptq_int8", "qat_kd_int8")


def check_engines(engines: Sequence[str] | None) -> tuple[str, ...]:
    """The engines to measure: ``engines`` (refused in one line if unknown or not installed), or every installed
    one."""
    engines = tuple(engines) if engines else installed()
    require(engines)
    return engines


def timings(graphs: dict[str, Path], engines: tuple[str, ...], shape: tuple[int, ...], threads: int,
             pass_seconds: float) -> dict:
    """Every (engine, graph) timed at each batch size in one interleaved pass of :func:`time_runs` lasting at least
    ``pass_seconds``, then again in a second pass (the retest): ``{key: {"b1": [first, retest], "b32": [...]}}``."""
    keys = [(e, g) for e in engines for g in graphs]

    def runs_at(b: int) -> list:
        x = np.random.default_rng(b).standard_normal((b, *shape)).astype(np.float32)
        return [load(graphs[g], e, threads).call(x) for e, g in keys]
    return {f"{e}/{g}": t for (e, g), t in zip(keys, passes_with_retest(runs_at, BATCHES, pass_seconds, SAMPLES))}


@holding("out")
def quantize_student(job: Job, student_dir: str | Path, out: str | Path, *, terms: list = (), ce_weight: float = 1.0,
                     seeds: int, qat_epochs: int, qat_lr: float, calibration_batches: int, threads: int = 2,
                     engines: Sequence[str] | None = None, pass_seconds: float = MIN_SECONDS,
                     show_progress: bool = True) -> dict:
    """fp32, post-training int8 and QAT+KD int8 (``seeds`` runs of ``qat_epochs`` epochs on the
    :class:`~nas_kd.job.Job`, with ``ce_weight`` x cross-entropy and the distillation ``terms``) of the exported
    student in ``student_dir``, each graph run by every engine of ``engines`` (:data:`nas_kd.inference.ENGINES`;
    default: the installed ones): test accuracy, batch-1 and batch-32 latency on ``threads`` threads (all timed
    together in interleaved rounds over ``pass_seconds``, then retimed), the kernels each engine actually runs, size
    on disk; each int8 graph is checked against its fake-quantised PyTorch model. The shipped row is the QAT+KD int8
    graph on the engine that runs it fastest at batch 32 against onnxruntime fp32 (the slower of the two passes).
    Writes ``<out>/*.onnx``; returns the result's payload."""
    from nas_kd.data import calibration_batches as batches_of
    from nas_kd.prune import load_network
    from nas_kd.students import Student, stage_names
    from nas_kd.train.distill import finished_student, train_students

    engines = check_engines(engines)
    student = load_network(student_dir).eval()  # a wrong --student or engine is refused before --out is made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = job.data
    shape = tuple(data.input_shape)
    calib = [x for _, (x, _) in zip(range(calibration_batches), batches_of(data, job.batching.batch_size, job.seed).epoch(0))]
    test_x, test_y, check_x = data.test.x, data.test.y, data.val.x[:1000]
    folded = fold_batchnorm(student)  # the float graph, and the template the QAT weights are stripped into
    graphs = {"fp32": export_float(folded, out / "fp32.onnx", shape)}
    graphs["ptq_int8"] = quantise_onnx(graphs["fp32"], out / "ptq_int8.onnx", calib)
    accs: dict[str, list[float]] = {f"{e}/{g}": [] for e in engines for g in GRAPHS}
    checks: dict[str, list[dict]] = {f"{e}/{g}": [] for e in engines for g in GRAPHS[1:]}
    ptq_model = with_minmax_ranges(prepare_qat(student, shape), calib)
    compiled = {f"{e}/{g}": load(graphs[g], e, threads) for e in engines for g in graphs}  # (+ QAT seed 0's below)
    for e in engines:
        accs[f"{e}/fp32"].append(accuracy(compiled[f"{e}/fp32"], test_x, test_y))
        accs[f"{e}/ptq_int8"].append(accuracy(compiled[f"{e}/ptq_int8"], test_x, test_y))
        checks[f"{e}/ptq_int8"].append(agreement(compiled[f"{e}/ptq_int8"], ptq_model, check_x))
    fake_quant_accs = []
    for seed in range(seeds):
        model = prepare_qat(student, shape)
        run = job.derive(job.run.at(out / f"qat-s{seed}"), seed=seed,
                         train={"epochs": qat_epochs, "lr": qat_lr, "warmup_epochs": 0.0})
        final = finished_student(run, model) or train_students(
            run, Student(lambda *_: model, {"qat_of": str(student_dir)}, stage_names(student), False), terms=terms,
            ce_weight=ce_weight, show_progress=show_progress)
        path = quantise_onnx(export_float(strip_qat(model, folded), out / f"qat-s{seed}_fp32.onnx", shape),
                             out / f"qat-s{seed}_int8.onnx", calib)
        graphs.setdefault("qat_kd_int8", path)  # seed 0's graph is timed: the seeds' graphs differ in weights only
        fake_quant_accs.append(final["test_acc"])
        for e in engines:
            graph = load(path, e, threads)
            compiled.setdefault(f"{e}/qat_kd_int8", graph)
            accs[f"{e}/qat_kd_int8"].append(accuracy(graph, test_x, test_y))
            checks[f"{e}/qat_kd_int8"].append(agreement(graph, model, check_x))
    times = timings(graphs, engines, shape, threads, pass_seconds)
    rows: dict[str, dict[str, Any]] = {}

    def speedup(reference: str, key: str, b: int) -> list[float]:  # per pass: the reference's time / the row's
        return [f / t for f, t in zip(times[reference][f"b{b}"], times[key][f"b{b}"])]

    for key, a in accs.items():
        engine, graph = key.split("/")
        kernels = compiled[key].kernels()
        references = {"own": f"{engine}/fp32", **({"onnxruntime": "onnxruntime/fp32"} if "onnxruntime" in engines else {})}
        rows[key] = {
            "engine": engine, "graph": graph, "file": str(graphs[graph]), "accs": a, "acc_mean": statistics.mean(a),
            "acc_std": statistics.stdev(a) if len(a) > 1 else None, "size_kb": graphs[graph].stat().st_size / 1024,
            "kernels": kernels, "int8_convs": list(int8_share(kernels, engine)), "checks": checks.get(key, []),
            **{f"latency_ms_b{b}": times[key][f"b{b}"] for b in BATCHES},
            **{f"speedup_vs_{name}_fp32_b{b}": speedup(reference, key, b)
               for name, reference in references.items() for b in BATCHES},
        }
    reference = "speedup_vs_onnxruntime_fp32_b32" if "onnxruntime" in engines else "speedup_vs_own_fp32_b32"
    shipped = max((k for k in rows if rows[k]["graph"] == "qat_kd_int8"), key=lambda k: min(rows[k][reference]))
    return {"student": str(student_dir), "threads": threads, "engines": list(engines),
            "latency_estimator": f"the fastest of at least {SAMPLES} samples over a pass of at least {pass_seconds:g} s "
                                 "(nas_kd.latency.time_runs), every row interleaved in each pass; two passes per "
                                 "batch size (first, retest)",
            "qat_epochs": qat_epochs, "qat_lr": qat_lr, "qat_seeds": seeds, "fake_quant_test_accs": fake_quant_accs,
            "calibration_images": sum(len(x) for x in calib), "distill": [t.spec() for t in terms],
            "test_images": len(test_y), "accuracy_kind": "test accuracy of the graph run by the engine",
            "rows": rows, "shipped": {"row": shipped, "rule": f"the QAT+KD int8 row with the highest {reference} "
                                                              "(the slower of its two passes)"}}


def write_markdown(p: dict[str, Any], path: Path) -> None:
    """The quantisation table (:func:`nas_kd.results.quantize.lines`, as ``docs/results.md`` shows it)."""
    text = ["# The student in int8 (CPU: onnxruntime, OpenVINO)", "", *quantize_lines(p, str(path.with_suffix(".json")))]
    path.write_text("\n".join(text) + "\n")

