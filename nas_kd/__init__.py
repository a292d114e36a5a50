"""nas_kd: search the best student architecture for a fixed teacher network, and distil it.

From Python (:mod:`nas_kd.api`): build the data (:func:`make_data` from tensors, arrays or a torch ``Dataset``;
:func:`load_dataset` for a registered one), then :func:`run` the whole job, or its stages one by one:
:func:`train_supernet`, :func:`search_supernet`, :func:`export_subnet`, :func:`distill_student`. Each takes a teacher ``nn.Module`` (with
its stage module names) and returns a result object. :func:`search_space` gives a space whose supernet you can
also train in your own loop (``net = space.build_supernet(); net.set_arch(space.sample(rng)); loss = ...``).
Bad input raises :class:`UserError` (one line, before any work). The ``nas-kd`` command line calls the same code.

The names below are loaded on first use, so that importing one module of the package (``nas_kd.errors``, which
the search spaces use) does not import the whole API.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_WHERE = {
    **{name: "nas_kd.api" for name in ("DistillResult", "RunResult", "SearchResult", "SupernetResult",
                                       "distill_student", "export_subnet", "make_data", "run", "search_supernet",
                                       "train_supernet")},
    "load_dataset": "nas_kd.data", "UserError": "nas_kd.errors", "Teacher": "nas_kd.job",
    "search_space": "search_spaces:get",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'nas_kd' has no attribute {name!r}")
    module, _, attr = _WHERE[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
