"""Distillation as a unit: registered distillers (``DISTILLERS``) composed as weighted terms in a recipe.

Methods: ``kd``, ``alpha_div``, ``multi_teacher`` (:mod:`.response`); ``hint``, ``at``, ``sp``,
``rkd`` (:mod:`.feature`); ``dml`` (:mod:`.online`); ``byot``, ``sad`` (:mod:`.self_distill`).
The trainer is :mod:`nas_kd.train.distill`.
"""
from nas_kd.distill import feature, online, response, self_distill  # noqa: F401  (register the methods)
from nas_kd.distill.base import (
    DISTILLERS,
    Distiller,
    Probe,
    Term,
    View,
    build_distiller,
    parse_terms,
)

__all__ = ["DISTILLERS", "Distiller", "Probe", "Term", "View", "build_distiller", "parse_terms"]
