"""Trainers: one network with distillation terms (:mod:`.distill`), supernets by ``supernet.mode``
(:data:`SUPERNET_TRAINERS`: :mod:`.supernet`, :mod:`.blockwise`), and the loop they share (:mod:`.loop`)."""
from nas_kd.train import blockwise, supernet  # noqa: F401  (register the supernet trainers)
from nas_kd.train.registry import SUPERNET_TRAINERS, SupernetTrainer

__all__ = ["SUPERNET_TRAINERS", "SupernetTrainer"]
