"""``nas-kd bench supernet-ablation --table T``: how supernet training choices (soft labels, in-place
distillation, the teacher, the supernet mode) change the max, min and median-FLOPs subnets, against the min net
trained alone. Rows x seeds are run by :mod:`nas_kd.bench.table`; the summary is rebuilt into ``<out>.json`` /
``<out>.md``. With ``--taus-study S`` (a search-quality study recipe), each supernet is also scored by the ``kl``
and ``rdm`` evaluators on S's band archs and compared with S's committed ground truth (Kendall tau per band):
how well the supernet ranks the archs a search chooses among.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from nas_kd.bench.table import finished, run_table
from nas_kd.evaluators import build_evaluators

SUBNETS = ("max", "min", "median")
TAU_EVALUATORS = ["kl", "rdm"]


def keeper(taus_study: str | None):
    """``keep(final)``: a supernet run's three subnets (a stand-alone run's ``test_acc`` is the min subnet's column),
    its seconds per epoch and, with ``taus_study``, the ``kl`` / ``rdm`` taus of its checkpoint."""
    study = None
    if taus_study is not None:
        from nas_kd.recipe_checks import load_checked
        from nas_kd.recipes import study_of

        study = study_of(load_checked(taus_study))

    def keep(final: dict[str, Any]) -> dict[str, Any]:
        accs = {f"{s}_acc": final.get(f"{s}_acc") for s in SUBNETS}
        if "test_acc" in final:
            accs["min_acc"] = final["test_acc"]
        out = {**accs, "epochs": final["epochs"], "device": final["device"], "mode": final.get("mode"),
               "seconds_per_epoch": round(final["wall_seconds"] / max(1, final["epochs"]), 2)}
        if study is not None and "max_acc" in final:
            from nas_kd.rankcorr.study import checkpoint_taus

            out["taus"] = checkpoint_taus(study, final["checkpoint"], build_evaluators(TAU_EVALUATORS, "taus"))
            out["taus_study"] = taus_study
        return out

    return keep


def summarise(table: dict, table_path: str) -> dict[str, Any]:
    """Per row: each subnet's mean test accuracy over the finished seeds (and the seeds' values), and the mean
    taus when the records have them."""
    rows = {}
    for row, recs in finished(table).items():
        rows[row] = {f"{s}_acc": (statistics.mean(vals) if (vals := [r[f"{s}_acc"] for r in recs if r[f"{s}_acc"] is not None])
                                  else None) for s in SUBNETS}
        rows[row] |= {f"{s}_acc_std": (statistics.stdev(vals) if len(vals := [r[f"{s}_acc"] for r in recs
                                                                               if r[f"{s}_acc"] is not None]) > 1 else None)
                      for s in SUBNETS}
        rows[row] |= {"seeds": [r["seed"] for r in recs], "per_seed": [{s: r[f"{s}_acc"] for s in SUBNETS} for r in recs],
                      "seconds_per_epoch": (statistics.mean(times) if (times := [r["seconds_per_epoch"] for r in recs
                                                                                  if r["seconds_per_epoch"] is not None])
                                            else None),
                      "devices": sorted({r["device"] for r in recs}), "overrides": table["rows"][row]["set"],
                      "recipe": table["rows"][row]["recipe"], "trainer": table["rows"][row]["trainer"],
                      "command": f"nas-kd bench supernet-ablation --table {table_path} (row {row})"}
        with_taus = [r["taus"] for r in recs if "taus" in r]
        if with_taus:
            rows[row]["taus"] = {band: {ev: statistics.mean(t[band][ev] for t in with_taus) for ev in with_taus[0][band]}
                                 for band in with_taus[0]}
            rows[row]["taus_study"] = next(r["taus_study"] for r in recs if "taus" in r)
    return {"seeds": table["seeds"], "base": {"recipe": table["recipe"], "set": table.get("set", [])},
            "accuracy": "test accuracy after BN recalibration (stand-alone: plain test accuracy), last epoch",
            "rows": rows}


def tau_bands(summary: dict[str, Any]) -> list[str]:
    """The budget bands of the summary's taus (none when no row has taus)."""
    return next((list(r["taus"]) for r in summary["rows"].values() if "taus" in r), [])


def tau_cell(row: dict[str, Any], bands: list[str], evaluator: str) -> str:
    """A row's taus of ``evaluator``, band by band (``-`` for a row without taus)."""
    return " / ".join(f"{row['taus'][b][evaluator]:+.2f}" for b in bands) if "taus" in row else "-"


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    def pct(r, s):
        v, sd = r[f"{s}_acc"], r.get(f"{s}_acc_std")
        return "-" if v is None else f"{100 * v:.2f}" + (f" +- {100 * sd:.2f}" if sd is not None else "")

    def secs(v):
        return "-" if v is None else f"{v:.1f}"

    bands = tau_bands(summary)
    tau_cols = [f"tau {ev} ({' / '.join(f'{float(b) * 100:g} %' for b in bands)})" for ev in TAU_EVALUATORS] if bands else []
    lines = [f"# Supernet training ablation (regenerate: `nas-kd bench supernet-ablation --table {table_path}`)", "",
             f"Every row: `{summary['base']['recipe']}` with "
             f"{' '.join(f'`{o}`' for o in summary['base']['set']) or 'no overrides'}, then its own overrides.", "",
             f"Accuracy: {summary['accuracy']}; mean +- s.d. over seeds {summary['seeds']}.", "",
             "| row | max | min | median-FLOPs | " + "".join(f"{c} | " for c in tau_cols) + "seeds | s / epoch | device |",
             "|---|---|---|---|" + "---|" * len(tau_cols) + "---|---|---|"]
    for name, r in summary["rows"].items():
        taus = [tau_cell(r, bands, ev) for ev in TAU_EVALUATORS] if bands else []
        lines.append(f"| {name} | {pct(r, 'max')} | {pct(r, 'min')} | {pct(r, 'median')} | "
                     + "".join(f"{t} | " for t in taus)
                     + f"{len(r['seeds'])} | {secs(r['seconds_per_epoch'])} | {', '.join(r['devices'])} |")
    lines += ["", "s / epoch: wall seconds per epoch, mean over the seeds whose record has one (a record without one "
                  "says why); runs shared the machine: compare them as ratios."]
    if bands:
        study = next(r["taus_study"] for r in summary["rows"].values() if "taus" in r)
        lines += [f"tau: Kendall tau of the evaluator, scored on each row's supernet, against the ground truth of "
                      f"`{study}` in each of its budget bands (mean over the row's seeds)."]
    shared = len(summary["base"]["set"])
    lines += ["", "Each row's own overrides:", "",
              *(f"- {name}: " + (" ".join(f"`{o}`" for o in r["overrides"][shared:]) or "none")
                + (f" (recipe `{r['recipe']}`, trainer {r['trainer']})" if r["trainer"] != "supernet" else "")
                for name, r in summary["rows"].items())]
    path.write_text("\n".join(lines) + "\n")


def bench_supernet_ablation(table_path: str, *, taus_study: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the ablation table, then rebuild its summary."""
    return run_table(table_path, "supernet", keeper(taus_study), summarise, write_markdown, **kwargs)
