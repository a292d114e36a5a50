"""The distillation method table (``nas-kd bench distill``): its comparisons and its one rendering, used by the
bench's ``<out>.md`` and by ``docs/results.md``.

Two families are tested, each with Welch's test and Holm's correction over every row it holds: every row against
``scratch``, and every row against ``kd`` (:func:`nas_kd.stats.compare_family`); a table names other reference rows
with ``references``: a list (every row tested against each) or a mapping from each reference to the rows of its
family (the pruning table: each budget's searched student against the rows at that budget). A row whose student is
not the table's (another MFLOPs count) is named as such; rows that touched validation data say how.
"""
from __future__ import annotations

import statistics
from typing import Any

from nas_kd.results import pm, source, table
from nas_kd.stats import ALPHA, POWER, Comparison, cell, compare_family, detectable_difference, verdict

REFERENCES = ("scratch", "kd")


def references(d: dict[str, Any]) -> dict[str, list[str] | None]:
    """Each reference row with the rows tested against it (None: every row), from the table's ``references``
    (default: ``scratch`` and ``kd``, each against every row)."""
    refs = d.get("references") or REFERENCES
    return dict(refs) if isinstance(refs, dict) else {r: None for r in refs}


def comparisons(rows: dict[str, dict[str, Any]], refs: dict[str, list[str] | None] | None = None
                ) -> dict[str, dict[str, Comparison]]:
    """``{reference: {row: Comparison}}`` for every family (rows with one seed are not tested); ``refs``: as
    :func:`references` gives them (default: ``scratch`` and ``kd`` against every row)."""
    refs = {r: None for r in REFERENCES} if refs is None else refs
    return {ref: compare_family({name: r["seeds"] for name, r in rows.items()
                                 if family is None or name == ref or name in family}, ref)
            for ref, family in refs.items()}


def detectable(rows: dict[str, dict[str, Any]]) -> tuple[float, int] | None:
    """The smallest difference (fraction) two rows of the table's usual seed count detect at 80 % power, with the
    median seed s.d. of the rows; and that seed count."""
    sds = [r["acc_std"] for r in rows.values() if r.get("acc_std") is not None]
    if not sds:
        return None
    n = statistics.median_low(len(r["seeds"]) for r in rows.values())
    return detectable_difference(statistics.median(sds), n), n


def lines(d: dict[str, Any], name: str) -> list[str]:
    """The table, what it tests, what differs between its rows, and its source (``name``: the record's path)."""
    rows = d["rows"]
    refs = references(d)
    tested = comparisons(rows, refs)
    student = d.get("student_mflops")
    ordered = sorted(rows.items(), key=lambda kv: -kv[1]["acc_mean"])
    latency = d.get("latency")
    runtimes = latency["runtimes"] if latency else []
    body = []
    for row, r in ordered:
        mflops = r.get("mflops")
        other = mflops is not None and student is not None and abs(mflops - student) > 0.005
        label = f"`{row}`" + (f" ({mflops:.2f} MFLOPs)" if other else "")
        timed = [f"{r['latency_ms'][rt]['b1']:.3f} / {r['latency_ms'][rt]['b32']:.2f}"
                 if rt in r.get("latency_ms", {}) else "-" for rt in runtimes]
        body.append([label, pm(r["acc_mean"], r["acc_std"]), len(r["seeds"]),
                     *(cell(tested[ref].get(row)) if row != ref else "-" for ref in refs), *timed,
                     f"{r['seconds_per_epoch']:.1f}"])
    s = d["schedule"]
    found = detectable(rows)
    others = [f"`{row}` is a {r['mflops']:.2f}-MFLOP, {r['params']:,}-parameter net"
              for row, r in rows.items() if r.get("mflops") is not None and student is not None
              and abs(r["mflops"] - student) > 0.005]
    notes = [f"`{row}`: {r['validation']}" for row, r in rows.items() if r.get("validation")]
    commits = sorted({c for r in rows.values() for c in r.get("git_commits", [])})
    out = [f"Student: {student:.2f} MFLOPs, {d['student_params']:,} params (every row unless named otherwise); "
           f"{s['train_images']:,} training images, {s['epochs']} epochs, batch {s['batch_size']}, "
           f"{'with' if s.get('augmentation') else 'no'} augmentation; {s['accuracy_kind']}; mean +- s.d. over seeds.",
           "",
           f"{' / '.join(f'vs {r}' for r in refs)}: the difference in points and its p by Welch's test, Holm-adjusted "
           f"over every row compared with that reference (families of "
           f"{' and '.join(str(len(tested[r])) for r in refs)}); bold: p < {ALPHA:g}. A difference that is not bold "
           "is not established, nor shown to be absent."]
    if found is not None:
        out[-1] += (f" At {found[1]} seeds and the rows' median seed s.d., a single test detects a difference of "
                    f"{100 * found[0]:.2f} points with {POWER:.0%} power at p < {ALPHA:g} (before Holm's correction, "
                    "which asks for more).")
    families = [f"`{r}` against {', '.join(f'`{n}`' for n in family)}" for r, family in refs.items() if family]
    if families:
        out[-1] += " Families: " + "; ".join(families) + " (\"-\": not in that family)."
    if latency:
        out += ["", f"ms b1 / b32 (runtime): each row's network (seed {latency['seed']}) timed at batch 1 and 32 on "
                f"{latency['threads']} threads, every network and runtime interleaved in one process "
                f"({latency['estimator']}); the slower of the two passes, in milliseconds per batch. Record: "
                f"`{latency['record']}` (`{latency['command']}`, commit {latency['git_commit'][:10]})."]
    out += ["", *table(["method", "test acc. (%)", "seeds", *(f"vs {r}" for r in refs),
                        *(f"ms b1 / b32 ({rt})" for rt in runtimes), "s / epoch"], body), ""]
    if others and not families:  # a table of families (the pruning table) names each row's MFLOPs below
        out += ["Rows whose net is not the table's student (compare them as other nets, not as methods): "
                + "; ".join(others) + ".", ""]
    if notes:
        out += ["Validation data: " + "; ".join(notes) + ".", ""]
    if len(commits) > 1:
        out += [f"The rows were trained by {len(commits)} code versions ({', '.join(c[:10] for c in commits)}): "
                "see each row's records for its own.", ""]
    out += ["Seconds per epoch were measured on 2 shared CPU cores: rough ratios only.", "", *family_lines(d),
            source(d, name)]
    return out


def _ratio(row: dict[str, Any], ref: dict[str, Any], runtime: str, batch: str) -> float | None:
    a, b = row.get("latency_ms", {}).get(runtime, {}), ref.get("latency_ms", {}).get(runtime, {})
    return a[batch] / b[batch] if batch in a and batch in b else None


def _named(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "none"


def family_lines(d: dict[str, Any]) -> list[str]:
    """For a table whose references each have their own family (the pruning table: a budget's searched student
    and the rows cut to its FLOPs): per reference, every row of its family with its difference (points, Holm p),
    the verdict, its MFLOPs and its measured latency over the reference's (each timed runtime and batch size); then
    the sentence the data support, at equal FLOPs and at measured latency. Nothing for other tables."""
    rows, refs = d["rows"], references(d)
    tested = comparisons(rows, refs)
    runtimes = (d.get("latency") or {}).get("runtimes", [])
    batches = ("b1", "b32")
    out: list[str] = []
    for ref, family in refs.items():
        members = [n for n in family or [] if n in rows]
        if ref not in rows or not members:
            continue
        body, kinds, faster = [], {"lower": [], "higher": [], "other": []}, []
        for n in members:
            c = tested[ref].get(n)
            v = verdict(c) if c else "one seed"
            ratios = [_ratio(rows[n], rows[ref], rt, b) for rt in runtimes for b in batches]
            body.append([f"`{n}`", f"{100 * c.diff:+.2f} (p {c.p_holm:.2g})" if c else "-", v, f"{rows[n]['mflops']:.2f}",
                         *(f"{r:.2f}x" if r is not None else "-" for r in ratios)])
            kinds[v if v in ("lower", "higher") else "other"].append(n)
            if v == "lower" and ratios and all(r is not None and r < 1 for r in ratios):
                faster.append(n)
        out += [f"Against `{ref}` ({rows[ref]['mflops']:.2f} MFLOPs, {100 * rows[ref]['acc_mean']:.2f} %):", "",
                *table(["row", f"vs {ref} (points, Holm p)", "verdict", "MFLOPs",
                        *(f"latency / {ref}'s, {rt} {b}" for rt in runtimes for b in batches)], body), ""]
        said = (f"`{ref}` is more accurate than {len(kinds['lower'])} of the {len(members)} rows "
                f"({_named(kinds['lower'])}) and less accurate than {len(kinds['higher'])} ({_named(kinds['higher'])}); "
                f"{len(kinds['other'])} are not separated from it ({_named(kinds['other'])}: not shown level either).")
        if runtimes:
            said += (f" Of the rows it beats, {len(faster)} run faster than it in every timed runtime and batch size "
                     f"({_named(faster)}: a trade-off, not a win at equal latency); the others are at least as slow "
                     "in some runtime or batch size.")
        out += [said, ""]
    return out


def _listed(items: list[tuple[str, Comparison]]) -> str:
    return ", ".join(f"`{n}` ({100 * c.diff:+.2f}, p {c.p_holm:.2g})" for n, c in items)


def verdicts(d: dict[str, Any], reference: str = "kd") -> str:
    """The comparative sentence pages may print about the table: which rows are higher or lower than
    ``reference`` after Holm's correction, and that the rest are not separated (never "level": no equivalence
    margin is tested here)."""
    tested = comparisons(d["rows"], {reference: None})[reference]
    higher = sorted(((n, c) for n, c in tested.items() if verdict(c) == "higher"), key=lambda x: -x[1].diff)
    lower = sorted(((n, c) for n, c in tested.items() if verdict(c) == "lower"), key=lambda x: x[1].diff)
    rest = len(tested) - len(higher) - len(lower)
    found = detectable(d["rows"])
    text = (f"Against `{reference}`, by Welch's test with Holm's correction over the {len(tested)} rows compared with "
            f"it: higher: {_listed(higher) or 'none'}; lower: {_listed(lower) or 'none'} (points, adjusted p). The "
            f"other {rest} are not separated from `{reference}`")
    if found is not None:
        text += (f" (at {found[1]} seeds a single test detects about {100 * found[0]:.1f} points with {POWER:.0%} "
                 "power), which does not make them level with it")
    return text + "."
