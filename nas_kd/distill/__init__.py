"""Distillation as a unit: registered distillers (``DISTILLERS``) composed as weighted terms in a recipe.

Methods: ``kd``, ``alpha_div``, ``multi_teacher`` (:mod:`.response`); ``hint``, ``at``, ``sp``,
``rkd`` (:mod:`.feature`); ``dml`` (:mod:`.online`); ``byot``, ``sad`` (:mod:`.self_distill`); one file each for
``dfa``, ``vid``, ``fsp``, ``irg``, ``adversarial``, ``kdcl``, ``frskd`` and ``sla``.
The trainer is :mod:`nas_kd.train.distill`.
"""
from nas_kd.distill import (  # noqa: F401  (register the methods)
    adversarial,
    dfa,
    feature,
    frskd,
    fsp,
    irg,
    kdcl,
    online,
    response,
    self_distill,
    sla,
    vid,
)
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
