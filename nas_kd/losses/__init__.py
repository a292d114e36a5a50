"""Distillation losses as pure functions on tensors (:mod:`nas_kd.losses.functional`).

The methods users pick by name wrap them as distillers: :mod:`nas_kd.distill`.
"""
