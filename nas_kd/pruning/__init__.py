"""Pruning criteria (``nas-kd prune --pruner {name, ...options}``), one file each, registered in :data:`PRUNERS`;
:mod:`nas_kd.prune` prunes a network to a budget with one and saves the smaller dense network."""
from nas_kd.pruning.base import PRUNERS, Pruner
from nas_kd.registry import import_modules

__all__ = ["PRUNERS", "Pruner"]

import_modules(__name__, __path__)  # every module registers its criterion: a new one is one new file
