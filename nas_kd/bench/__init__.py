"""Benchmarks behind ``nas-kd bench NAME``; each writes a JSON under ``results/``."""
