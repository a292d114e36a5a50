"""Trainers: one network with distillation terms (:mod:`.distill`), supernets by ``supernet.mode``
(:data:`SUPERNET_TRAINERS`: :mod:`.supernet`, :mod:`.spos`, :mod:`.progressive`, :mod:`.cream`, :mod:`.blockwise`),
and the loop they share (:mod:`.loop`). A supernet method is built from ``supernet.mode`` by :mod:`nas_kd.plans`
and trains with ``trainer.train(job, supernet_section)``."""
from __future__ import annotations

from nas_kd.registry import import_modules
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer, mode_name, supernet_trainer

__all__ = ["SUPERNET_TRAINERS", "SupernetTrainer", "mode_name", "supernet_trainer"]

import_modules(__name__, __path__)  # every module registers its supernet modes: a new mode is one new file
