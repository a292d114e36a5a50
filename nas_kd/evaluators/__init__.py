"""Evaluators: score subnets of a trained supernet by similarity to the teacher (or by accuracy / cost).

``build_evaluators(["kl", {"name": "rdm", "proj_dim": 256}], where)`` gives evaluators with
``higher_is_better`` and ``raw(view)``; :func:`score_archs` scores many archs with several evaluators,
sharing the BN recalibration and the subnet's forward pass, and orients every score so that higher is
better. One file per family: :mod:`.subnet_evaluators` (accuracy, kl, rdm, cka), :mod:`.tgsa` (p+tg),
:mod:`.kd_proxy` (kd-proxy), :mod:`.training_free` (diswot, naswot, synflow), :mod:`.dna`, :mod:`.cost` (flops, params).
"""
from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView, build_evaluators, supernet_free
from nas_kd.evaluators.context import EvalContext
from nas_kd.evaluators.scoring import score_archs
from nas_kd.registry import import_modules

import_modules(__name__, __path__)  # every module registers its evaluators: a new one is one new file

__all__ = ["EVALUATORS", "Evaluator", "EvalContext", "SubnetView", "build_evaluators", "score_archs", "supernet_free"]
