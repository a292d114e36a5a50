"""The supernet training table (``nas-kd bench supernet-ablation``, e.g. ``results/supernet_modes.json``): its one
rendering, used by the bench's ``<out>.md`` and by ``docs/results.md``.

Each subnet column (max, min, median-FLOPs) is one family: every row against the reference row (the one with no
overrides of its own, the recipe's default method) by Welch's test, Holm-adjusted over the rows of that column.
"""
from __future__ import annotations

from typing import Any

from nas_kd.results import pm, source, table
from nas_kd.stats import ALPHA, POWER, Comparison, cell, compare_family, detectable_difference, verdict

SUBNETS = ("max", "min", "median")
TAU_EVALUATORS = ["kl", "rdm"]


def tau_bands(summary: dict[str, Any]) -> list[str]:
    """The budget bands of the summary's taus (none when no row has taus)."""
    return next((list(r["taus"]) for r in summary["rows"].values() if "taus" in r), [])


def tau_cell(row: dict[str, Any], bands: list[str], evaluator: str) -> str:
    """A row's taus of ``evaluator``, band by band (``-`` for a row without taus)."""
    return " / ".join(f"{row['taus'][b][evaluator]:+.2f}" for b in bands) if "taus" in row else "-"


def reference(summary: dict[str, Any]) -> str | None:
    """The row the others are tested against: the first with no overrides of its own (the recipe's default)."""
    shared = len(summary["base"]["set"])
    return next((name for name, r in summary["rows"].items()
                 if not r["overrides"][shared:] and r.get("trainer") == "supernet"), None)


def comparisons(summary: dict[str, Any]) -> dict[str, dict[str, Comparison]]:
    """``{subnet: {row: Comparison against the reference row}}``, one Holm family per subnet column."""
    ref = reference(summary)
    if ref is None:
        return {}
    out = {}
    for s in SUBNETS:
        groups = {name: [p[s] for p in r["per_seed"] if p[s] is not None] for name, r in summary["rows"].items()}
        out[s] = compare_family(groups, ref)
    return out


def lines(d: dict[str, Any], name: str) -> list[str]:
    """The table (accuracy and taus per row), the rows tested against the default, and the source."""
    bands = tau_bands(d)
    rows = [[name_, *(pm(r[f"{s}_acc"], r[f"{s}_acc_std"]) if r[f"{s}_acc"] is not None else "-" for s in SUBNETS),
             *(tau_cell(r, bands, ev) for ev in TAU_EVALUATORS), len(r["seeds"]),
             "-" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.0f}"]
            for name_, r in d["rows"].items()]
    shared = len(d["base"]["set"])
    out = [f"Every row: `{d['base']['recipe']}` with {' '.join(f'`{o}`' for o in d['base']['set']) or 'no overrides'}"
           f", then its own overrides (below). {d['accuracy']}; mean +- s.d. over seeds {d['seeds']}."
           + (f" tau: Kendall tau of the `kl` / `rdm` evaluators scored on the row's supernet against the ground truth "
              f"of `{next(r['taus_study'] for r in d['rows'].values() if 'taus' in r)}`, per budget band "
              f"({' / '.join(f'{float(b) * 100:g} %' for b in bands)}; mean over the row's seeds)." if bands else ""),
           "", *table(["row", "max (%)", "min (%)", "median (%)", *(f"tau {ev}" for ev in TAU_EVALUATORS), "seeds",
                       "s / epoch"], rows), ""]
    tested, ref = comparisons(d), reference(d)
    if ref is not None and any(tested.values()):
        names = [n for n in d["rows"] if n != ref and any(n in tested[s] for s in SUBNETS)]
        sds = [r[f"{s}_acc_std"] for r in d["rows"].values() for s in SUBNETS if r.get(f"{s}_acc_std") is not None]
        seeds = min(len(d["rows"][ref]["seeds"]), *(len(d["rows"][n]["seeds"]) for n in names))
        typical = sorted(sds)[len(sds) // 2]
        out += [f"Against `{ref}` (the default), in points, p by Welch's test Holm-adjusted over the {len(names)} rows "
                f"of each column (bold: p < {ALPHA:g}); a difference that is not bold is not established, nor shown "
                f"to be absent: at {seeds} seeds and the median s.d. ({100 * typical:.2f} points) a single test "
                f"detects {100 * detectable_difference(typical, seeds):.1f} points with {POWER:.0%} power.", "",
                *table(["row", *(f"{s} vs {ref}" for s in SUBNETS)],
                       [[n, *(cell(tested[s].get(n)) for s in SUBNETS)] for n in names]), ""]
    out += ["s / epoch: wall seconds per epoch, mean over the seeds whose record has one; runs shared the machine: "
            "compare them as ratios.", "", "Each row's own overrides:", "",
            *(f"- {n}: " + (" ".join(f"`{o}`" for o in r["overrides"][shared:]) or "none")
              + (f" (recipe `{r['recipe']}`, trainer {r['trainer']})" if r["trainer"] != "supernet" else "")
              for n, r in d["rows"].items()), "", source(d, name)]
    return out


def verdicts(d: dict[str, Any]) -> str:
    """The comparative sentence pages may print about the table: per subnet column, the rows lower or higher than
    the default after Holm's correction, and that the rest are not separated (never "level")."""
    ref, tested = reference(d), comparisons(d)
    if ref is None or not any(tested.values()):
        return ""
    parts, separated = [], set()
    for s in SUBNETS:
        hits = sorted(((n, c) for n, c in tested[s].items() if verdict(c) != "not separable"), key=lambda x: x[1].diff)
        separated |= {n for n, _ in hits}
        if hits:
            parts.append(f"at the {s} subnet " + ", ".join(
                f"`{n}` {verdict(c)} ({100 * c.diff:+.2f} points, p {c.p_holm:.2g})" for n, c in hits))
    rows = [n for n in d["rows"] if n != ref and any(n in tested[s] for s in SUBNETS)]
    others = [n for n in rows if n not in separated]
    seeds = len(d["rows"][ref]["seeds"])
    return (f"Against the default `{ref}`, by Welch's test with Holm's correction over the {len(rows)} rows of each "
            f"subnet column: {'; '.join(parts) or 'no row separated'}. "
            + (f"No other difference is established at {seeds} seeds ({', '.join(f'`{n}`' for n in others)} are "
               "neither separated from the default nor shown level with it)." if others else ""))
