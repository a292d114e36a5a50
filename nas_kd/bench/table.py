"""Method tables: rows x seeds of training runs, one committed record per (row, seed), resumable.

A table file names the base recipe, the seeds, a run directory, where records go, the rows, and optionally
``set``: overrides every row starts from (before its own). A row is a
list of ``--set`` overrides, or a mapping ``{set: [...], recipe: other.yaml, trainer: distill | supernet | prune}``
for a row that differs in more than overrides (``trainer`` defaults to the table's). A ``prune`` row cuts the recipe's
teacher with ``pruner`` (``{name, ...options}``) to ``budget_fraction`` of its FLOPs (or to ``budget_mflops``, e.g.
a searched student's) and fine-tunes it for the recipe's
``train.epochs`` with its distill terms (:func:`nas_kd.recipes.prune`), so pruned teachers and searched students can
share one table and one schedule. ``{runs}`` and
``{seed}`` are substituted, so a row can name another row's run directory (``{runs}/<row>-s{seed}``),
which is then trained first if missing. ``latency``: runtimes of :data:`nas_kd.latency.RUNTIMES` (e.g. ``[torch,
onnxruntime]``) with which every row's network (its first seed's) is timed once all rows have it
(:func:`time_rows`, ``<out>/latency.json``). Each (row, seed) writes ``<out>/<row>-s<seed>.json`` (with its
command, commit and wall time) as it finishes; finished records are skipped and an interrupted run
resumes from its checkpoint, so a table fills in across sessions and machines.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

from nas_kd.config import Recipe
from nas_kd.errors import UserError
from nas_kd.provenance import Stopwatch, commit_record, origin, write_json_atomic, write_result
from nas_kd.recipe_checks import load_checked
from nas_kd.recipes import distill, job_of, prune, train_supernet
from nas_kd.students import resolve_student

TABLE_KEYS = {"recipe", "seeds", "runs", "out", "rows"}
OPTIONAL_KEYS = {"set", "references", "latency", "title"}  # overrides every row starts from; the rows every row is
# tested against; the runtimes every row's network is timed with; the heading of its Markdown page
TRAINERS = ("distill", "supernet", "prune")
BUDGETS = ("budget_fraction", "budget_mflops")
ROW_KEYS = {"set", "recipe", "trainer", "pruner", *BUDGETS}


def read_table_file(path: str | Path, required: set[str], optional: set[str], kind: str = "a table") -> dict[str, Any]:
    """A table file's YAML mapping, refused in one line when unreadable or when its keys are not ``required``
    (plus any of ``optional``)."""
    try:
        table = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the table ({e})") from None
    if not isinstance(table, dict) or not required <= set(table) <= required | optional:
        raise UserError(f"{path}: {kind} has the keys {sorted(required)} (and optionally {sorted(optional)})")
    return table


def load_table(path: str | Path, trainer: str) -> dict[str, Any]:
    """Read and check a table file whose rows train with ``trainer`` unless a row says otherwise; rows come
    back as ``{name: {set, recipe, trainer}}``."""
    table = read_table_file(path, TABLE_KEYS, OPTIONAL_KEYS)
    if not isinstance(table.get("set", []), list):
        raise UserError(f"{path}: set (the overrides of every row) is a list of KEY=VALUE")
    if not isinstance(table.get("title", ""), str):
        raise UserError(f"{path}: title (the heading of the table's page) is a string")
    if not table["seeds"] or not all(isinstance(s, int) for s in table["seeds"]):
        raise UserError(f"{path}: seeds is a non-empty list of integers")
    if not isinstance(table["rows"], dict) or not table["rows"]:
        raise UserError(f"{path}: rows maps each row name to a list of KEY=VALUE overrides")
    rows = {}
    for name, row in table["rows"].items():
        row = {"set": row} if isinstance(row, list) else row
        if not isinstance(row, dict) or not set(row) <= ROW_KEYS or not isinstance(row.get("set", []), list):
            raise UserError(f"{path}: row {name!r} is a list of KEY=VALUE overrides or a mapping with keys "
                            f"{sorted(ROW_KEYS)} (set: a list)")
        pruning = {k: row[k] for k in ("pruner", *BUDGETS) if k in row}
        row = {"set": [*table.get("set", []), *row.get("set", [])], "recipe": row.get("recipe", table["recipe"]),
               "trainer": row.get("trainer", trainer), **pruning}
        if row["trainer"] not in TRAINERS:
            raise UserError(f"{path}: row {name!r}: trainer {row['trainer']!r} is not one of {', '.join(TRAINERS)}")
        if (row["trainer"] == "prune") != bool(pruning) or (pruning and (len(pruning) != 2 or "pruner" not in pruning)):
            raise UserError(f"{path}: row {name!r}: a prune row, and only one, gives pruner and one of "
                            f"{' or '.join(BUDGETS)}")
        if pruning:  # the criterion, its options and the budget, checked before any row trains
            budget = next(k for k in BUDGETS if k in pruning)
            value = pruning[budget]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 < value < 1 if budget == "budget_fraction" else value > 0):
                raise UserError(f"{path}: row {name!r}: {budget} {value!r} is not "
                                f"{'a fraction in (0, 1)' if budget == 'budget_fraction' else 'a positive MFLOPs count'}")
            from nas_kd.plans import pruner

            pruner(row["pruner"], f"{path}: row {name!r}: pruner")
        rows[name] = row
    from nas_kd.latency import RUNTIMES

    runtimes = table.get("latency", [])
    if not isinstance(runtimes, list) or not all(r in RUNTIMES for r in runtimes):
        raise UserError(f"{path}: latency is a list of runtimes, each one of {', '.join(RUNTIMES)}")
    refs = table.get("references", [])
    named = [*refs, *(n for family in refs.values() for n in family)] if isinstance(refs, dict) else refs
    if not isinstance(refs, (list, dict)) or (isinstance(refs, dict) and not all(
            isinstance(f, list) for f in refs.values())) or not all(isinstance(n, str) for n in named):
        raise UserError(f"{path}: references is a list of rows, or a mapping from each reference row to the rows "
                        "tested against it")
    if unknown := sorted({n for n in named if n not in rows}):
        raise UserError(f"{path}: references name rows the table does not have: {', '.join(unknown)}")
    return {**table, "rows": rows}


def overrides(table: dict, row: str, seed: int) -> list[str]:
    return [o.replace("{runs}", str(table["runs"])).replace("{seed}", str(seed)) for o in table["rows"][row]["set"]]


def _needs(table: dict, row: str) -> list[str]:
    """Rows whose run directory ``row``'s overrides name."""
    text = " ".join(table["rows"][row]["set"])
    return [r for r in table["rows"] if r != row and re.search(r"\{runs\}/" + re.escape(r) + r"-s\{seed\}", text)]


def row_recipe(table: dict, row: str, seed: int) -> Recipe:
    """The checked recipe of one (row, seed): the row's overrides, the seed and its run directory."""
    return load_checked(table["rows"][row]["recipe"], [*overrides(table, row, seed), f"seed={seed}",
                                                       f"run.out_dir={table['runs']}", f"run.name={row}-s{seed}"])


def _train(recipe, spec: dict[str, Any], show_progress: bool) -> dict[str, Any]:
    if spec["trainer"] == "supernet":
        return train_supernet(recipe, show_progress=show_progress)
    if spec["trainer"] == "prune":  # the fine-tune's final.json, with what the pruning made, as the row's
        out = Path(recipe.run.out_dir) / recipe.run.name
        record = prune(recipe, spec["pruner"], out, **{k: spec[k] for k in BUDGETS if k in spec},
                       finetune_epochs=recipe.train.epochs, show_progress=show_progress)
        final = json.loads((out / "finetune" / "final.json").read_text()) | {
            k: record[k] for k in ("pruner", "ratio", "cut_test_acc", "mflops_before", "params_before")}
        write_json_atomic(out / "final.json", final)
        return final
    return distill(recipe, resolve_student(recipe.student.arch, recipe.student.space), show_progress=show_progress)


def run_row(table: dict, row: str, seed: int, keep: Callable[[dict], dict], *, commit: bool = False,
            show_progress: bool = True) -> dict[str, Any]:
    """Train (or resume) one (row, seed) and write its record (``keep(final)`` picks what it holds)."""
    started = origin()
    name = f"{row}-s{seed}"
    run_dir = Path(table["runs"]) / name
    for dep in _needs(table, row):
        if not (Path(table["runs"]) / f"{dep}-s{seed}" / "final.json").exists():
            run_row(table, dep, seed, keep, commit=commit, show_progress=show_progress)
    spec = table["rows"][row]
    recipe = row_recipe(table, row, seed)
    if (run_dir / "final.json").exists():
        final = json.loads((run_dir / "final.json").read_text())
    else:
        final = _train(recipe, spec, show_progress)
    record = {"row": row, "seed": seed, "overrides": spec["set"], "recipe": spec["recipe"], "trainer": spec["trainer"],
              **keep(final)}
    path = Path(table["out"]) / f"{name}.json"
    record = write_result(path, record, final["wall_seconds"], started)
    if commit:
        commit_record(path)
    return record


def finished(table: dict) -> dict[str, list[dict[str, Any]]]:
    """``{row: its finished records, seed by seed}`` for the rows with at least one."""
    out = {}
    for row in table["rows"]:
        recs = [json.loads(p.read_text()) for s in table["seeds"] if (p := Path(table["out"]) / f"{row}-s{s}.json").exists()]
        if recs:
            out[row] = recs
    return out


def run_table(table_path: str, trainer: str, keep: Callable[[dict], dict], summarise: Callable[[dict, str], dict],
              write_markdown: Callable[[dict, Path, str], None], *, rows: list[str] | None = None, commit: bool = False,
              report_only: bool = False, time_only: bool = False, show_progress: bool = True) -> dict[str, Any]:
    """Run every missing (row, seed) of the table (or of ``rows``), time the rows' networks when the table asks
    for it and every row has its first seed (not with ``rows``), then rebuild ``<out>.json`` / ``<out>.md`` from the
    records (``report_only``: only rebuild, from the records there are; ``time_only``: train nothing, time the
    networks now (every row needs its first seed), then rebuild)."""
    started, watch = origin(), Stopwatch()
    table = load_table(table_path, trainer)
    unknown = [r for r in rows or [] if r not in table["rows"]]
    if unknown:
        raise UserError(f"--rows {unknown}: not rows of {table_path} ({', '.join(table['rows'])})")
    if time_only and not table.get("latency"):
        raise UserError(f"--time: {table_path} names no runtimes to time its rows with (latency: [torch, ...])")
    if time_only and (missing := [r for r in table["rows"] if not network_dir(table, r, table["seeds"][0]).exists()]):
        raise UserError(f"--time: rows without their first seed's network yet: {', '.join(missing)} (run the table "
                        "first)")
    todo = [(row, seed) for seed in ([] if report_only or time_only else table["seeds"]) for row in rows or table["rows"]
            if not (Path(table["out"]) / f"{row}-s{seed}.json").exists()]
    for row, seed in todo:  # every recipe to train is checked before the first training starts
        row_recipe(table, row, seed)
    for row, seed in todo:
        if not (Path(table["out"]) / f"{row}-s{seed}.json").exists():  # a dependency of an earlier row may have made it
            run_row(table, row, seed, keep, commit=commit, show_progress=show_progress)
    if table.get("latency") and not report_only and (time_only or not rows):
        time_rows(table, commit=commit)
    summary = summarise(table, table_path)
    out = Path(table["out"])
    record = write_result(out.with_suffix(".json"), summary, watch.seconds(), started)
    write_markdown(record, out.with_suffix(".md"), table_path)  # after the JSON: it names its command and commit
    return record


LATENCY_FILE = "latency.json"
BATCHES = (1, 32)


def network_dir(table: dict, row: str, seed: int) -> Path:
    """Where (row, seed)'s trained network is saved: the run directory of a pruned network, else its student."""
    from nas_kd.prune import is_pruned

    run = Path(table["runs"]) / f"{row}-s{seed}"
    return run if is_pruned(run) else run / "student"


def _time_networks(dirs: dict[str, str], runtimes: list[str], input_shape: tuple[int, ...], threads: int,
                   pass_seconds: float) -> dict[str, dict[str, dict[str, list[float]]]]:
    """(In a timing process) every network with every runtime, interleaved, at each batch size: a first pass and a
    retest, ``{row: {runtime: {"b1": [first, retest], "b32": [...]}}}``."""
    from nas_kd.latency import passes_with_retest, runner, torch_threads
    from nas_kd.prune import load_network

    nets = {row: load_network(d) for row, d in dirs.items()}
    keys = [(row, rt) for row in nets for rt in runtimes]
    out: dict = {row: {} for row in nets}
    with torch_threads(threads):
        timed = passes_with_retest(lambda b: [runner(nets[row], torch.zeros(b, *input_shape), rt) for row, rt in keys],
                                   BATCHES, pass_seconds)
    for (row, rt), t in zip(keys, timed):
        out[row][rt] = t
    return out


def time_rows(table: dict, *, commit: bool = False, threads: int = 2) -> dict[str, Any] | None:
    """Every row's network (first seed) timed with the table's ``latency`` runtimes on ``threads`` threads, all
    interleaved in one fresh timing process (:func:`nas_kd.latency.in_timing_process`), at batch 1 and 32, twice
    (first pass, retest); written to ``<out>/latency.json`` (kept: delete it to time again). Waits (returns None)
    until every row has its first seed's network. Time it on an otherwise idle machine."""
    from nas_kd.latency import MIN_SECONDS, in_timing_process

    path = Path(table["out"]) / LATENCY_FILE
    if path.exists():
        return json.loads(path.read_text())
    seed = table["seeds"][0]
    dirs = {row: str(network_dir(table, row, seed)) for row in table["rows"]}
    if not all(Path(d).exists() for d in dirs.values()):
        return None
    shape = tuple(job_of(row_recipe(table, next(iter(table["rows"])), seed)).data.input_shape)
    started, watch = origin(), Stopwatch()
    print(f"timing {len(dirs)} networks x {table['latency']} (keep the machine otherwise idle)", flush=True)
    ms = in_timing_process(_time_networks, dirs, list(table["latency"]), shape, threads,
                           MIN_SECONDS)
    record = {"seed": seed, "threads": threads, "runtimes": table["latency"], "pass_seconds": MIN_SECONDS,
              "networks": dirs, "latency_ms": ms,
              "estimator": "the fastest of at least 20 samples per pass (nas_kd.latency.time_runs), every network "
                           "and runtime interleaved in each pass; two passes per batch size (first, retest)"}
    record = write_result(path, record, watch.seconds(), started)
    if commit:
        commit_record(path)
    return record
