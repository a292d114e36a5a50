"""Distillation losses: pure functions (:mod:`nas_kd.losses.functional`) and registered modules (``LOSSES``)."""
from nas_kd.losses.modules import LOSSES, AlphaDivergence, AttentionTransfer, HintLoss, KDLoss, RKDLoss, SPLoss

__all__ = ["LOSSES", "AlphaDivergence", "AttentionTransfer", "HintLoss", "KDLoss", "RKDLoss", "SPLoss"]
