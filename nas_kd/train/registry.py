"""Supernet training methods, chosen by ``supernet.mode`` (``sandwich``: :mod:`nas_kd.train.supernet`;
``blockwise``: :mod:`nas_kd.dna.blockwise`, which registers itself)."""
from nas_kd.registry import Registry

SUPERNET_TRAINERS: Registry = Registry("supernet.mode")
