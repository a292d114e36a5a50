"""One renderer per result: the tables that a producer (``nas-kd bench ...``) writes beside its records and that
``nas-kd report`` puts in the pages come from the same function here. Low in the house: it reads records (plain
dicts) and :mod:`nas_kd.stats`, nothing that trains."""
from __future__ import annotations

from typing import Any


def pct(v: float | None, digits: int = 2) -> str:
    """A fraction as a percentage (``-`` for none)."""
    return "-" if v is None else f"{100 * v:.{digits}f}"


def pm(mean: float, sd: float | None) -> str:
    """mean +- s.d. in percent (the mean alone without an s.d.)."""
    return f"{100 * mean:.2f} +- {100 * sd:.2f}" if sd is not None else f"{100 * mean:.2f}"


def source(d: dict[str, Any], name: str) -> str:
    """Where a table comes from: its file, command and commit."""
    return f"Source: `{name}`, made by `{d.get('command')}` (commit `{str(d.get('git_commit'))[:10]}`)."


def table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table."""
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows)]
