"""The strategies bench (``nas-kd bench strategies``): what its columns measure, shared by its ``.md`` and
``docs/results.md``."""
from __future__ import annotations

from typing import Any


def shared_trials(d: dict[str, Any]) -> dict[tuple[str, str], int]:
    """``{(a, b): n}`` for pairs of strategies whose best-so-far curves are identical, on every budget and seed, for
    their first ``n`` trials (n >= the first column): e.g. evolution's initial population is the same random draws as
    ``random``'s, so up to its size the two columns are one measurement."""
    names = list(next(iter(d["budgets"].values()))["strategies"])
    out = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            n = min(_common(d["budgets"][k]["strategies"][a]["curves"], d["budgets"][k]["strategies"][b]["curves"])
                    for k in d["budgets"])
            if n >= d["checkpoints"][0]:
                out[(a, b)] = n
    return out


def _common(xs: list[list[float]], ys: list[list[float]]) -> int:
    n = min(len(x) for x in [*xs, *ys])
    for t in range(n):
        if any(x[t] != y[t] for x, y in zip(xs, ys)):
            return t
    return n


def shared_note(d: dict[str, Any]) -> str:
    """The sentence saying which columns are one measurement (empty when none are)."""
    pairs = shared_trials(d)
    if not pairs:
        return ""
    said = "; ".join(f"`{a}` and `{b}` have the same best-so-far curve for their first {n} trials on every seed and "
                     f"budget, so their "
                     f"columns up to {max(c for c in d['checkpoints'] if c <= n)} trials are one measurement"
                     for (a, b), n in pairs.items())
    return said[0].upper() + said[1:] + "."
