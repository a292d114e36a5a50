"""Evaluators: score subnets of a trained supernet by similarity to the teacher (or by accuracy / cost).

``EVALUATORS.build(name)`` gives an evaluator with ``higher_is_better`` and ``raw(view)``;
:func:`score_archs` scores many archs with several evaluators, sharing the BN recalibration
and the subnet's forward pass, and orients every score so that higher is better.
"""
from nas_kd.evaluators import training_free  # noqa: F401  (registers diswot, naswot, synflow)
from nas_kd.evaluators.context import EvalContext, SubnetView, check_evaluator_options
from nas_kd.evaluators.registry import EVALUATORS, Evaluator
from nas_kd.evaluators.scoring import score_archs

__all__ = ["EVALUATORS", "Evaluator", "EvalContext", "SubnetView", "check_evaluator_options", "score_archs"]
