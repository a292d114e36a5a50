"""Distillation as a unit: registered distillers (``DISTILLERS``) composed as weighted terms in a recipe.

Methods: ``kd``, ``alpha_div``, ``multi_teacher`` (:mod:`.response`); ``hint``, ``at``, ``sp``,
``rkd`` (:mod:`.feature`); ``dml`` (:mod:`.online`); ``byot``, ``sad`` (:mod:`.self_distill`); one file each for
``dfa``, ``vid``, ``fsp``, ``irg``, ``adversarial``, ``kdcl``, ``frskd`` and ``sla``.
The trainer is :mod:`nas_kd.train.distill`.
"""
from nas_kd.distill.base import (
    DISTILLERS,
    Distiller,
    Probe,
    Term,
    View,
    build_distiller,
    parse_terms,
)
from nas_kd.registry import import_modules

import_modules(__name__, __path__)  # every module registers its methods: a new method is one new file

__all__ = ["DISTILLERS", "Distiller", "Probe", "Term", "View", "build_distiller", "parse_terms"]
