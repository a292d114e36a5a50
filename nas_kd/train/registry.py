"""Supernet training methods, chosen by ``supernet.mode`` (:data:`SUPERNET_TRAINERS`): ``sandwich``
(:mod:`nas_kd.train.supernet`) and ``blockwise`` (:mod:`nas_kd.train.blockwise`), registered when
:mod:`nas_kd.train` is imported."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from nas_kd.registry import Registry


@dataclass(frozen=True)
class SupernetTrainer:
    """One supernet training method.

    ``train(recipe, *, resume, on_step, show_progress)`` trains into the recipe's run directory and returns its
    final metrics (``final.json``, with ``checkpoint``). ``weight_sharing``: every subnet inherits working weights
    from the checkpoint (a search scores subnets with them, the export starts from them); False for a
    blockwise supernet, whose archs are scored from ranking tables and whose student trains from its own init.
    """

    train: Callable[..., dict[str, Any]]
    weight_sharing: bool


SUPERNET_TRAINERS: Registry[SupernetTrainer] = Registry("supernet.mode")
