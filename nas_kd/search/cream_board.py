"""``cream-board``: Cream of the Crop's own search (Peng et al., NeurIPS 2020): no search algorithm, the final
arch is taken from the prioritized paths the ``cream`` supernet kept while it trained (:mod:`nas_kd.train.cream`).

The board's paths that fit the budget are scored by the evaluator (at most ``trials`` of them, board order) and
ranked by it; the paper picks the board's best by validation accuracy, i.e. ``search.evaluator: accuracy``.
"""
from __future__ import annotations

from dataclasses import dataclass

from nas_kd.checkpoint import load_checkpoint
from nas_kd.errors import UserError
from nas_kd.search.objective import Row
from nas_kd.search.strategies import STRATEGIES, SearchInputs, Strategy


@STRATEGIES.register("cream-board")
@dataclass(kw_only=True)
class CreamBoard(Strategy):
    """The ``cream`` supernet's board paths under the budget, ranked by the evaluator."""

    def search(self, run: SearchInputs) -> list[Row]:
        objective, checkpoint = run.objective, run.checkpoint
        board = load_checkpoint(checkpoint).get("extra", {}).get("board") if checkpoint else None
        if not board:
            raise UserError(f"strategy cream-board: {checkpoint} holds no board of prioritized paths: train the "
                            "supernet with supernet.mode cream")
        fitting = [e["arch"] for e in board if objective.feasible(objective.space.validate(e["arch"]))]
        if not fitting:
            smallest = min(objective.space.flops(e["arch"]) for e in board) / 1e6
            raise UserError(f"strategy cream-board: none of the board's {len(board)} paths fits the budget "
                            f"{objective.budget / 1e6:.2f} MFLOPs (the smallest has {smallest:.2f}): raise the budget "
                            "or use another strategy on this supernet")
        for arch in fitting[: run.trials]:
            objective(arch)
        return objective.rows()
