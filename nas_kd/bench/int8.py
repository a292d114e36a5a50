"""``nas-kd bench int8 --table T``: at the same int8 latency, does a search that times the int8 runtime find a
better student than a search under FLOPs whose pick is then quantised, or than the arch of most FLOPs that fits?

The table file names a ``nas-kd run`` recipe with a trained supernet (``pipeline.supernet_checkpoint``), overrides
of it (``set``), the seeds, the ``runtime`` the student ships to (``openvino-int8`` or ``onnxruntime-int8``), one
latency table of that runtime per batch size (``tables: {1: path, 32: path}``), the run directory and where records
go. The arms:

- ``flops``: the recipe's own search, under ``pipeline.budget_fraction_of_teacher`` of the teacher's FLOPs. Its
  pick is the other arms' ``search.budget_arch``: each of their searches times it beside its table's anchors when
  it starts and takes its latency as the budget, so this arm meets every budget by definition and the other arms
  compete with it at its own int8 latency.
- ``int8-bB``: the recipe's search (evaluator, strategy, trials) under that budget on B's table, with the measured
  final check of every latency-budget search (:func:`nas_kd.search.run.run_search`).
- ``maxflops-bB``: the same search with the ``flops`` evaluator: the arch of most FLOPs it finds that fits.

Each search runs once, at the first seed, and writes ``search-<arm>.json``. Each (arm, seed) exports the pick,
recalibrates and fine-tunes it as ``nas-kd run`` does (``pipeline.finetune_epochs`` at ``pipeline.finetune_lr``)
and makes its QAT+KD int8 graph as ``pipeline.quantize`` does (:func:`nas_kd.train.quantize.quantize_student`, one
QAT run of ``pipeline.quantize_epochs``), both measured on the runtime's engine: one record ``<arm>-s<seed>.json``
each, committed as it lands with ``--commit``. Once the first seed's are all there, every arm's int8 graph of that
seed is timed on that engine at batch 1 and 32, all interleaved in one pass and a retest (``latency.json``; before
the other seeds, as the graphs live in the uncommitted run directory). The summary
(:mod:`nas_kd.results.int8`) compares the int8-searched arm with the two others of its budget.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas_kd.errors import UserError
from nas_kd.provenance import Stopwatch, commit_record, origin, write_result
from nas_kd.results.int8 import lines as int8_lines
from nas_kd.stats import holm, tost, welch

KEYS = {"recipe", "seeds", "runs", "out", "runtime", "tables"}
OPTIONAL = {"set", "threads", "pass_seconds"}
RUNTIMES = ("openvino-int8", "onnxruntime-int8")
MARGIN = 0.005  # "level" needs equivalence within half a point (TOST)


def load_spec(path: str | Path) -> dict[str, Any]:
    """Read and check a table file (the keys in the module's docstring); every recipe it implies is checked too."""
    from nas_kd.bench.table import read_table_file
    from nas_kd.latency import load_table

    spec = read_table_file(path, KEYS, OPTIONAL, "an int8 table")
    if not spec["seeds"] or not all(isinstance(s, int) for s in spec["seeds"]) or len(spec["seeds"]) < 2:
        raise UserError(f"{path}: seeds is a list of at least 2 integers (a test needs 2 per arm)")
    if spec["runtime"] not in RUNTIMES:
        raise UserError(f"{path}: runtime {spec['runtime']!r} is not one of {', '.join(RUNTIMES)}")
    if not isinstance(spec["tables"], dict) or not spec["tables"]:
        raise UserError(f"{path}: tables maps a batch size to its latency table, e.g. {{1: t1.json, 32: t32.json}}")
    try:
        spec["tables"] = {int(b): table for b, table in spec["tables"].items()}
    except ValueError:
        raise UserError(f"{path}: tables maps batch sizes (integers) to latency tables, got {list(spec['tables'])}") from None
    for b, table in spec["tables"].items():
        t = load_table(table)
        if t.get("runtime") != spec["runtime"] or t["batch_size"] != b:
            raise UserError(f"{path}: tables[{b}] = {table} was timed with {t.get('runtime')} at batch "
                            f"{t['batch_size']}, not {spec['runtime']} at batch {b}")
    base = _recipe(spec, spec["seeds"][0], [], "check")
    if base.pipeline.supernet_checkpoint is None or base.pipeline.budget_fraction_of_teacher is None:
        raise UserError(f"{path}: its recipe needs pipeline.supernet_checkpoint (the supernet searched) and "
                        "pipeline.budget_fraction_of_teacher (the FLOPs arm's budget)")
    return {"threads": 2, "pass_seconds": None, "set": [], **spec}


def _recipe(spec: dict[str, Any], seed: int, overrides: list[str], name: str):
    from nas_kd.recipe_checks import load_checked

    return load_checked(spec["recipe"], [*spec.get("set", []), *overrides, f"seed={seed}",
                                         f"run.out_dir={spec['runs']}", f"run.name={name}"])


def _arm_overrides(spec: dict[str, Any], arm: str, reference: dict[str, Any] | None, mflops: float | None) -> list[str]:
    """The search overrides of an arm: the ``flops`` arm's FLOPs budget; for the others, the latency table and the
    ``reference`` arch (the FLOPs arm's pick) whose latency, timed when each search starts, is the budget."""
    checkpoint = _recipe(spec, spec["seeds"][0], [], "check").pipeline.supernet_checkpoint
    common = [f"search.checkpoint={checkpoint}"]
    if arm == "flops":
        return [*common, f"search.budget_mflops={mflops}"]
    batch = int(arm.rsplit("-b", 1)[1])
    timed = [*common, "search.budget_mflops=null", f"search.budget_arch={json.dumps(reference)}",
             f"search.latency_table={spec['tables'][batch]}", f"search.runtime={spec['runtime']}"]
    if arm.startswith("maxflops"):
        return [*timed, "search.evaluator=flops", "search.extra_evaluators=[]", "search.trials=500",
                "search.measure_top=20"]
    return timed


def arms(spec: dict[str, Any]) -> list[str]:
    return ["flops", *(f"{kind}-b{b}" for b in spec["tables"] for kind in ("int8", "maxflops"))]


def _search(spec: dict[str, Any], arm: str, flops: dict[str, Any] | None, commit: bool,
            show_progress: bool) -> dict[str, Any]:
    """The arm's search (once), recorded as ``search-<arm>.json`` with its pick's predictions in every table."""
    from nas_kd.flops import teacher_fraction_mflops
    from nas_kd.latency import load_table, predict_ms
    from nas_kd.recipes import job_of, search

    path = Path(spec["out"]) / f"search-{arm}.json"
    if path.exists():
        return json.loads(path.read_text())
    started = origin()
    seed = spec["seeds"][0]
    mflops = None
    if arm == "flops":
        base = _recipe(spec, seed, [], f"search-{arm}")
        job = job_of(base)
        mflops = teacher_fraction_mflops(job.teacher.module(), job.data.input_shape,
                                         base.pipeline.budget_fraction_of_teacher)
    recipe = _recipe(spec, seed, _arm_overrides(spec, arm, None if flops is None else flops["arch"], mflops),
                     f"search-{arm}")
    result = search(recipe, show_progress=show_progress)
    arch = result["best"]["arch"]
    space = _space(spec)
    tables = {b: load_table(t) for b, t in spec["tables"].items()}
    record = {"arm": arm, "arch": arch, "mflops": space.flops(arch) / 1e6, "params": space.params(arch),
              "budget_mflops": result["budget_mflops"], "budget_ms": result["budget_ms"],
              "predicted_ms": {str(b): predict_ms(space, arch, t) for b, t in tables.items()},
              "search": {k: result.get(k) for k in ("evaluator", "strategy", "trials", "scored", "latency_table",
                                                    "best_predicted_latency_ms", "best_latency_ms_at_table_speed",
                                                    "best_rank_by_score", "final_check_rounds", "measured_checks")},
              "search_dir": str(Path(spec["runs"]) / f"search-{arm}")}
    record = write_result(path, record, result["wall_seconds"], started)
    if commit:
        commit_record(path)
    return record


def _space(spec: dict[str, Any]):
    from nas_kd.search.run import load_searchable

    checkpoint = _recipe(spec, spec["seeds"][0], [], "check").pipeline.supernet_checkpoint
    return load_searchable(checkpoint).space


def _student(spec: dict[str, Any], arm: str, seed: int, searched: dict[str, Any], commit: bool,
             show_progress: bool) -> dict[str, Any]:
    """One (arm, seed): the pick exported, fine-tuned and quantised as ``nas-kd run`` does; its record."""
    from nas_kd.provenance import write_json_atomic
    from nas_kd.recipes import job_of, terms_of
    from nas_kd.train.quantize import quantize_student
    from nas_kd.train.standalone import export_student

    name = f"{arm}-s{seed}"
    path = Path(spec["out"]) / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    started, watch = origin(), Stopwatch()
    recipe = _recipe(spec, seed, [], name)
    p, job, terms = recipe.pipeline, job_of(recipe), terms_of(recipe)
    run = Path(spec["runs"]) / name
    student = run / "student"
    if not (student / "arch.json").exists():
        finetune = job.derive(train={"lr": p.finetune_lr, "warmup_epochs": 0.0})
        export_student(p.supernet_checkpoint, searched["arch"], student, job=finetune, terms=terms,
                       ce_weight=recipe.student.ce_weight, recalibrate_batches=recipe.supernet.bn_batches,
                       finetune_epochs=p.finetune_epochs)
    engine = spec["runtime"].removesuffix("-int8")
    qfile = run / "quantize" / "quantize.json"
    if not qfile.exists():  # its latencies are not used (pass_seconds 0): the arms are timed together at the end
        q = quantize_student(job, student, run / "quantize", terms=terms, ce_weight=recipe.student.ce_weight, seeds=1,
                             qat_epochs=p.quantize_epochs, qat_lr=p.quantize_lr, calibration_batches=8,
                             threads=spec["threads"], engines=(engine,), pass_seconds=0.0,
                             show_progress=show_progress)
        write_json_atomic(qfile, q)
    q = json.loads(qfile.read_text())
    finetuned = json.loads((student / "finetune" / "final.json").read_text())
    train_images = len(job.data.train)
    record = {"arm": arm, "seed": seed, "arch": searched["arch"], "mflops": searched["mflops"],
              "params": searched["params"], "engine": engine,
              "fp32_test_acc": q["rows"][f"{engine}/fp32"]["acc_mean"],
              "ptq_int8_test_acc": q["rows"][f"{engine}/ptq_int8"]["acc_mean"],
              "int8_test_acc": q["rows"][f"{engine}/qat_kd_int8"]["acc_mean"],
              "int8_convs": q["rows"][f"{engine}/qat_kd_int8"]["int8_convs"],
              "int8_graph": q["rows"][f"{engine}/qat_kd_int8"]["file"],
              "finetune_epochs": p.finetune_epochs, "qat_epochs": p.quantize_epochs, "distill": q["distill"],
              "train_images": (p.finetune_epochs + p.quantize_epochs) * train_images,
              "finetune_wall_seconds": finetuned["wall_seconds"], "test_images": q["test_images"]}
    record = write_result(path, record, watch.seconds(), started)
    if commit:
        commit_record(path)
    return record


def _latency(spec: dict[str, Any], records: dict[str, dict[str, Any]], commit: bool) -> dict[str, Any]:
    """Every arm's int8 graph (first seed) timed together at batch 1 and 32, first pass and retest."""
    from nas_kd.latency import MIN_SECONDS
    from nas_kd.train.quantize import timings

    path = Path(spec["out"]) / "latency.json"
    if path.exists():
        return json.loads(path.read_text())
    started, watch = origin(), Stopwatch()
    graphs = {arm: Path(r["int8_graph"]) for arm, r in records.items()}
    missing = [str(g) for g in graphs.values() if not g.exists()]
    if missing:
        raise UserError(f"{', '.join(missing)}: the int8 graphs to time are gone (runs/ is not committed): delete "
                        f"the first seed's records in {spec['out']} and run the table again to remake them")
    engine = spec["runtime"].removesuffix("-int8")
    pass_seconds = spec["pass_seconds"] or MIN_SECONDS
    times = timings(graphs, (engine,), tuple(_space(spec).input_shape), spec["threads"], pass_seconds)
    record = {"engine": engine, "threads": spec["threads"], "seed": spec["seeds"][0], "pass_seconds": pass_seconds,
              "graphs": {arm: str(g) for arm, g in graphs.items()},
              "latency_ms": {arm: times[f"{engine}/{arm}"] for arm in graphs},
              "estimator": "the fastest of at least 20 samples per pass (nas_kd.latency.time_runs), every arm "
                           "interleaved in each pass; two passes per batch size (first, retest)"}
    record = write_result(path, record, watch.seconds(), started)
    if commit:
        commit_record(path)
    return record


def summarise(spec: dict[str, Any], records: dict[str, dict[str, Any]], table_path: str) -> dict[str, Any]:
    """Per arm: its pick, accuracies over the finished seeds; per batch size: the budget, each arm's int8 latency and
    its ratio to the ``flops`` arm's in the same pass; the int8-searched arm against each other arm of its budget
    on int8 test accuracy (Welch, Holm over every such comparison of the table; TOST at :data:`MARGIN`)."""
    import dataclasses
    import statistics

    from nas_kd.stats import detectable_difference, verdict

    rows: dict[str, dict[str, Any]] = {}
    for arm in arms(spec):
        recs = [records[f"{arm}-s{s}"] for s in spec["seeds"] if f"{arm}-s{s}" in records]
        searched = records.get(f"search-{arm}")
        if not recs or searched is None:
            continue
        rows[arm] = {"arch": searched["arch"], "mflops": searched["mflops"], "params": searched["params"],
                     "budget_mflops": searched["budget_mflops"], "budget_ms": searched["budget_ms"],
                     "predicted_ms": searched["predicted_ms"], "search": searched["search"],
                     "seeds": [r["seed"] for r in recs], "fp32_accs": [r["fp32_test_acc"] for r in recs],
                     "ptq_int8_accs": [r["ptq_int8_test_acc"] for r in recs],
                     "int8_accs": [r["int8_test_acc"] for r in recs], "int8_convs": recs[0]["int8_convs"],
                     "train_images": recs[0]["train_images"], "engine": recs[0]["engine"],
                     "records_wall_seconds": round(sum(r["wall_seconds"] for r in recs), 1),
                     "git_commits": sorted({r["git_commit"] for r in recs})}
    latency = records.get("latency")
    budgets: dict[str, dict[str, Any]] = {}
    raw = {}
    for b in spec["tables"]:
        members = [a for a in ("flops", f"int8-b{b}", f"maxflops-b{b}") if a in rows]
        times = {a: latency["latency_ms"][a][f"b{b}"] for a in members if latency and a in latency["latency_ms"]}
        budgets[str(b)] = {
            "budget_ms": {a: records[f"search-{a}"]["budget_ms"] for a in (f"int8-b{b}", f"maxflops-b{b}")
                          if f"search-{a}" in records},
            "arms": members, "latency_ms": times,
            "ratio_to_flops": {a: [t / f for t, f in zip(times[a], times["flops"])] for a in times} if "flops" in times
            else {}}
        mine = rows.get(f"int8-b{b}")
        for other in ("flops", f"maxflops-b{b}"):
            if mine and other in rows and len(mine["int8_accs"]) > 1 and len(rows[other]["int8_accs"]) > 1:
                raw[(f"int8-b{b}", other)] = welch(mine["int8_accs"], rows[other]["int8_accs"])
    adjusted = holm({f"{a} vs {o}": c.p for (a, o), c in raw.items()})
    comparisons = []
    for (a, o), c in raw.items():
        c = dataclasses.replace(c, p_holm=adjusted[f"{a} vs {o}"])
        x, y = rows[a]["int8_accs"], rows[o]["int8_accs"]
        comparisons.append({"arm": a, "against": o, **c.as_dict(100), "tost_p": tost(x, y, MARGIN),
                            "verdict": verdict(c, x, y, margin=MARGIN)})
    sds = [statistics.stdev(r["int8_accs"]) for r in rows.values() if len(r["int8_accs"]) > 1]
    n = min((len(r["int8_accs"]) for r in rows.values()), default=0)
    base = _recipe(spec, spec["seeds"][0], [], "check").pipeline
    return {"table": table_path, "runtime": spec["runtime"], "seeds": spec["seeds"], "margin": MARGIN,
            "schedule": {"finetune_epochs": base.finetune_epochs, "finetune_lr": base.finetune_lr,
                         "qat_epochs": base.quantize_epochs, "qat_lr": base.quantize_lr,
                         "flops_budget_fraction_of_teacher": base.budget_fraction_of_teacher,
                         "supernet": base.supernet_checkpoint},
            "rows": rows, "budgets": budgets, "comparisons": comparisons,
            "latency": {k: latency[k] for k in ("engine", "threads", "seed", "pass_seconds", "estimator", "command",
                                                "git_commit", "wall_seconds")} if latency else None,
            "detectable_difference": detectable_difference(statistics.median(sds), n) if sds and n > 1 else None}


def bench_int8(table_path: str, *, commit: bool = False, report_only: bool = False,
               show_progress: bool = True) -> dict[str, Any]:
    """Run every missing search, (arm, seed) and the joint timing of the table, then rebuild ``<out>.json`` and
    ``<out>.md`` from the records (``report_only``: only rebuild, from the records there are)."""
    started, watch = origin(), Stopwatch()
    spec = load_spec(table_path)
    out = Path(spec["out"])
    if not report_only:
        flops = _search(spec, "flops", None, commit, show_progress)
        searched = {arm: flops if arm == "flops" else _search(spec, arm, flops, commit, show_progress)
                    for arm in arms(spec)}
        for seed in spec["seeds"]:
            for arm in arms(spec):
                _student(spec, arm, seed, searched[arm], commit, show_progress)
            if seed == spec["seeds"][0]:  # timed as soon as they exist: the graphs live in the run directory only
                first = {arm: json.loads((out / f"{arm}-s{seed}.json").read_text()) for arm in arms(spec)}
                _latency(spec, first, commit)
    records = {p.stem: json.loads(p.read_text()) for p in sorted(out.glob("*.json"))}
    summary = summarise(spec, records, table_path)
    record = write_result(out.with_suffix(".json"), summary, watch.seconds(), started)
    text = ["# The int8-searched student against the FLOPs-searched one at equal int8 latency", "",
            *int8_lines(record, str(out.with_suffix(".json")))]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    return record
