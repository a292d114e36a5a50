"""Plots with matplotlib's object-oriented API (no pyplot, so importing this module leaves the
process's matplotlib backend alone): search Pareto fronts; the study's figures use :func:`subplots`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from nas_kd.provenance import atomic_file


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any):
    """A new ``Figure`` and its axes, like ``pyplot.subplots`` but without a GUI backend."""
    fig_kw = {k: kwargs.pop(k) for k in ("figsize",) if k in kwargs}
    fig = Figure(**fig_kw)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save(fig: Figure, path: str | Path, formats: tuple[str, ...] = ("png",)) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; returns the files."""
    out = []
    for fmt in formats:
        p = Path(path).with_suffix(f".{fmt}")
        with atomic_file(p) as tmp:  # a figure is whole or absent
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=fmt)
        out.append(p)
    return out


def pareto_front(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows not dominated in (higher ``key``, lower ``mflops``), by increasing MFLOPs."""
    front, best = [], float("-inf")
    for r in sorted(rows, key=lambda r: (r["mflops"], -r[key])):
        if r[key] > best:
            front.append(r)
            best = r[key]
    return front


def pareto_plot(rows: list[dict[str, Any]], key: str, budget_mflops: float, path: str | Path,
                picked: dict[str, Any] | None = None) -> list[Path]:
    """Score (oriented: higher is better) vs MFLOPs of every candidate, the Pareto front and the budget."""
    fig, ax = subplots(figsize=(6, 4))
    ax.scatter([r["mflops"] for r in rows], [r[key] for r in rows], s=12, alpha=0.6, label="candidates")
    front = pareto_front(rows, key)
    ax.plot([r["mflops"] for r in front], [r[key] for r in front], "-o", ms=3, color="C1", label="Pareto front")
    ax.axvline(budget_mflops, ls="--", color="gray", label=f"budget {budget_mflops:.1f} MFLOPs")
    if picked is not None:
        ax.scatter([picked["mflops"]], [picked[key]], marker="*", s=160, color="C3", label="best", zorder=5)
    ax.set_xlabel("MFLOPs (fvcore convention)")
    ax.set_ylabel(f"{key} (higher is better)")
    ax.legend(fontsize=8)
    return save(fig, path)
