"""``slim``: student search by channel gates (Gu & Tresp, "Search for Better Students to Learn Distilled Knowledge",
ECAI 2020, after Network Slimming, Liu et al., ICCV 2017).

Start from the supernet's largest subnet (a copy: the shared weights are untouched), treat its BatchNorm
scales as gates, and train it for ``steps`` SGD steps (``lr``, momentum 0.9) to match the teacher
(``KD`` at ``temperature``, KL as in the paper) with an L1 penalty ``l1`` x sum |gate|, on the search's shared
training batches (``search.bn_batches`` of them, cycled; a named simplification of the paper's epochs on the
whole training set). Then read the student off the gates that stay above a threshold t:

* a stage's width: the channels whose mean |gate| over the layers writing them (every block adds into them)
  exceeds t, snapped up to the nearest width of the space;
* a stage's depth: 1 + the number of its later blocks with an inner gate above t, snapped up likewise;
* a block's inner width (``ratio`` / ``expand``): its inner channels above t, snapped up to the smallest choice
  that keeps them; the kernel is not gated and stays at its largest.

t is bisected until the arch fits the budget (the largest t-arch that fits). That arch is the student, as in the
paper: it alone is scored by the evaluator (for the search's record; ``trials`` is not used). Re-ranking the
archs met on the way by the evaluator was tried and dropped: at the 12 % band of the 2k study ``rdm`` preferred
the space's smallest arch (2.85 MFLOPs) to the gates' 10.44-MFLOPs student under a 10.85-MFLOPs budget. The gate
training's record (losses, threshold, kept channels) goes to ``slim.json`` in the search's run directory.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch

from nas_kd.errors import UserError
from nas_kd.losses.functional import kd_loss
from nas_kd.provenance import write_json_atomic
from nas_kd.search.strategies import STRATEGIES, SearchInputs, Strategy
from nas_kd.typecheck import AtLeast1, Range


def _snap(values, needed: int) -> Any:
    """The smallest value >= ``needed`` (the largest when none is)."""
    fitting = [v for v in sorted(values) if v >= needed]
    return fitting[0] if fitting else max(values)


def gates(net) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
    """|gate| per channel: per stage its output channels (mean over their writers), per stage and block its
    inner channels (the last layer writing them)."""
    outer, inner = [], []
    for name in net.stage_names:
        blocks = getattr(net, name).blocks
        writers = [w for b in blocks for w in b.outer_channels()[0]]
        outer.append(torch.stack([w.bn.weight.detach().abs() for w in writers]).mean(0))
        inner.append([b.inner_channels()[0][-1].bn.weight.detach().abs() for b in blocks])
    return outer, inner


def arch_at(space, outer: list[torch.Tensor], inner: list[list[torch.Tensor]], t: float) -> dict[str, Any]:
    """The arch the gates above ``t`` describe, snapped to the space's choices."""
    arch = dict(space.max_arch())
    for i, st in enumerate(space.stages, start=1):
        width = _snap(st.widths, int((outer[i - 1] > t).sum()))
        alive = sum(bool((g > t).any()) for g in inner[i - 1][1:])
        depth = _snap(st.depths, 1 + alive)
        arch[f"stage{i}.width"], arch[f"stage{i}.depth"] = width, depth
        for j in range(1, depth + 1):
            kept = int((inner[i - 1][j - 1] > t).sum())
            cin = space.stage_input_width(i, arch) if j == 1 else width
            choices = {c: max(v) for c, v in st.block_choices.items()}
            for c, values in st.block_choices.items():
                if c == "kernel":
                    continue
                fits = [v for v in sorted(values)
                        if space.block(cin, width, st.stride, {**choices, c: v}, j == 1)["mid"] >= kept]
                choices[c] = fits[0] if fits else max(values)
            arch.update({f"stage{i}.block{j}.{c}": v for c, v in choices.items()})
    return space.canonical(arch)


@STRATEGIES.register("slim", example={"steps": 5})
@dataclass(kw_only=True)
class Slim(Strategy):
    """L1-gated largest subnet trained against the teacher, the student read off its gates under the budget."""

    steps: AtLeast1 = 200
    lr: Annotated[float, Range(0, low_open=True)] = 0.01
    l1: Annotated[float, Range(0)] = 1e-4
    temperature: Annotated[float, Range(0, low_open=True)] = 1.0
    bisections: AtLeast1 = 40

    def search(self, run: SearchInputs) -> list[Row]:
        objective, ctx = run.objective, run.context
        if ctx is None or ctx.supernet is None:
            raise UserError("strategy slim trains gates on a weight-sharing supernet's largest subnet: give "
                            "search.checkpoint a sandwich / spos / progressive / cream supernet")
        space = objective.space
        net = copy.deepcopy(ctx.supernet).train()
        net.set_arch(space.max_arch())
        gate_params = [w.bn.weight for name in net.stage_names for b in getattr(net, name).blocks
                       for w in {id(m): m for m in (*b.outer_channels()[0], *b.inner_channels()[0])}.values()]
        opt = torch.optim.SGD(net.parameters(), lr=self.lr, momentum=0.9)
        batches = [x.to(ctx.device) for x in ctx.calibration]
        with torch.no_grad():
            targets = [ctx.teacher(x).float() for x in batches]
        losses = []
        for step in range(self.steps):
            x, t = batches[step % len(batches)], targets[step % len(batches)]
            opt.zero_grad(set_to_none=True)
            match = kd_loss(net(x).float(), t, self.temperature)
            (match + self.l1 * sum(g.abs().sum() for g in gate_params)).backward()
            opt.step()
            losses.append(match.item())
        outer, inner = gates(net)
        lo, hi = 0.0, float(max(g.max() for g in outer + [g for s in inner for g in s]))
        if objective.feasible(arch_at(space, outer, inner, lo)):
            hi = lo
        else:
            for _ in range(self.bisections):
                mid = (lo + hi) / 2
                if objective.feasible(arch_at(space, outer, inner, mid)):
                    hi = mid
                else:
                    lo = mid
        final = arch_at(space, outer, inner, hi)
        if not objective.feasible(final):
            raise UserError(f"strategy slim: even the gates' smallest arch ({space.flops(final) / 1e6:.2f} MFLOPs) is "
                            f"over the budget {objective.budget / 1e6:.2f} MFLOPs")
        objective(final)
        if run.workdir is not None:
            record = {"steps": self.steps, "lr": self.lr, "l1": self.l1, "temperature": self.temperature,
                      "kd_loss_first": losses[0], "kd_loss_last": losses[-1], "threshold": hi, "arch": final,
                      "kept_width": [int((g > hi).sum()) for g in outer],
                      "kept_inner": [[int((g > hi).sum()) for g in s] for s in inner]}
            write_json_atomic(Path(run.workdir, "slim.json"), record)
        return objective.rows()
