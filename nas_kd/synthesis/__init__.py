"""Data-free synthesis methods (``nas-kd synthesize --method {name, ...options}``): inputs made from the teacher
alone, one file per method, registered in :data:`SYNTHESIZERS`; :mod:`nas_kd.datafree` runs them and writes the
dataset."""
from nas_kd.registry import import_modules
from nas_kd.synthesis.base import SYNTHESIZERS, BatchByBatch, Synthesizer, Task

__all__ = ["SYNTHESIZERS", "BatchByBatch", "Synthesizer", "Task"]

import_modules(__name__, __path__)  # every module registers its method: a new one is one new file
