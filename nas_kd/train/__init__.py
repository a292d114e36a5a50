"""Trainers: one network with distillation terms (:mod:`.distill`), supernets by ``supernet.mode``
(:data:`SUPERNET_TRAINERS`: :mod:`.supernet`, :mod:`.spos`, :mod:`.progressive`, :mod:`.cream`, :mod:`.blockwise`),
and the loop they share (:mod:`.loop`)."""
from __future__ import annotations

from typing import Any

from nas_kd.config import SupernetConfig
from nas_kd.job import Job
from nas_kd.train import blockwise, cream, progressive, spos, supernet  # noqa: F401  (register the supernet trainers)
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer, check_supernet, mode_name, supernet_trainer

__all__ = ["SUPERNET_TRAINERS", "SupernetTrainer", "check_supernet", "mode_name", "supernet_trainer", "train_supernet"]


def train_supernet(job: Job, cfg: SupernetConfig, **kwargs: Any) -> dict[str, Any]:
    """Train the supernet of the ``supernet`` section ``cfg`` by its ``mode`` on the :class:`~nas_kd.job.Job`;
    ``kwargs``: ``resume``, ``on_step``, ``show_progress``."""
    return supernet_trainer(cfg.mode).train(job, cfg, **kwargs)
