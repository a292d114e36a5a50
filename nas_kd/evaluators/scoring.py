"""Score many archs with several evaluators, sharing each subnet's recalibration and forward pass."""
from __future__ import annotations

from typing import Any, Iterable

from tqdm import tqdm

from nas_kd.evaluators.context import EvalContext, SubnetView
from nas_kd.evaluators.registry import EVALUATORS


def score_archs(ctx: EvalContext, archs: Iterable[dict[str, Any]], names: list[str],
                show_progress: bool = False) -> list[dict[str, Any]]:
    """One row per arch: ``arch``, ``mflops``, ``mparams``, and per evaluator ``name`` (oriented: higher is
    better) and ``name_raw`` (its natural value and direction)."""
    evaluators = [EVALUATORS.build(n) for n in names]
    space = ctx.supernet.space
    needs_subnet = any(ev.reads_supernet for ev in evaluators)
    rows = []
    for arch in tqdm(list(archs), desc="scoring", disable=None if show_progress else True, leave=False):
        arch = space.validate(arch)
        row: dict[str, Any] = {"arch": arch, "mflops": space.flops(arch) / 1e6, "mparams": space.params(arch) / 1e6}
        view = SubnetView(ctx, arch) if needs_subnet else _TableView(ctx, arch)
        for name, ev in zip(names, evaluators):
            raw = ev.raw(view)
            row[f"{name}_raw"], row[name] = raw, ev.oriented(raw)
        rows.append(row)
    return rows


class _TableView:
    """What the cost and table evaluators read, without recalibrating a subnet."""

    def __init__(self, ctx: EvalContext, arch: dict[str, Any]) -> None:
        self.ctx, self.arch = ctx, arch
