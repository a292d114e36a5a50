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
from nas_kd.results.supernet_modes import SUBNETS, TAU_EVALUATORS
from nas_kd.results.supernet_modes import lines as modes_lines



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


def write_markdown(summary: dict[str, Any], path: Path, table_path: str) -> None:
    """The table as Markdown (:func:`nas_kd.results.supernet_modes.lines`, as ``docs/results.md`` shows it)."""
    lines = [f"# Supernet training ablation (regenerate: `nas-kd bench supernet-ablation --table {table_path}`)", "",
             *modes_lines(summary, str(path.with_suffix(".json")))]
    path.write_text("\n".join(lines) + "\n")


def bench_supernet_ablation(table_path: str, *, taus_study: str | None = None, **kwargs: Any) -> dict[str, Any]:
    """Run every missing (row, seed) of the ablation table, then rebuild its summary."""
    return run_table(table_path, "supernet", keeper(taus_study), summarise, write_markdown, **kwargs)
