"""Score many archs with several evaluators, sharing each subnet's recalibration and forward pass."""
from __future__ import annotations

from typing import Any, Iterable

from tqdm import tqdm

from nas_kd.errors import UserError
from nas_kd.evaluators.base import Evaluator, supernet_free
from nas_kd.evaluators.context import EvalContext, RecalibratedSubnet, SpaceOnly


def score_archs(ctx: EvalContext, archs: Iterable[dict[str, Any]], evaluators: list[Evaluator],
                show_progress: bool = False) -> list[dict[str, Any]]:
    """One row per arch: ``arch``, ``mflops``, ``mparams``, and per evaluator ``name`` (oriented: higher is
    better) and ``name_raw`` (its natural value and direction)."""
    space = ctx.space
    needs_subnet = any(ev.reads_supernet for ev in evaluators)
    if needs_subnet and ctx.supernet is None:
        reading = [ev.name for ev in evaluators if ev.reads_supernet]
        raise UserError(f"evaluator(s) {', '.join(reading)} read a weight-sharing supernet's subnets, and there is "
                        f"none here (a blockwise supernet): use evaluators that ignore its weights "
                        f"({', '.join(supernet_free())})")
    for ev in evaluators:
        ev.prepare(ctx)
    rows = []
    for arch in tqdm(list(archs), desc="scoring", disable=None if show_progress else True, leave=False):
        arch = space.validate(arch)
        row: dict[str, Any] = {"arch": arch, "mflops": space.flops(arch) / 1e6, "mparams": space.params(arch) / 1e6}
        view = RecalibratedSubnet(ctx, arch) if needs_subnet else SpaceOnly(ctx, arch)
        for ev in evaluators:
            raw = ev.raw(view)
            row[f"{ev.name}_raw"], row[ev.name] = raw, ev.oriented(raw)
        rows.append(row)
    return rows
