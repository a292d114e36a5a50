"""Supernet training methods, chosen by ``supernet.mode`` (:data:`SUPERNET_TRAINERS`), a name or
``{name, ...options}``: the options are the method's typed keyword-only fields (what it distils, how it samples,
its own schedule), checked when the recipe or the API call is read. Every module of :mod:`nas_kd.train` that
registers one is imported with the package: ``sandwich`` (:mod:`nas_kd.train.supernet`), ``spos``
(:mod:`nas_kd.train.spos`), ``progressive`` (:mod:`nas_kd.train.progressive`), ``cream`` (:mod:`nas_kd.train.cream`)
and ``blockwise`` (:mod:`nas_kd.train.blockwise`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from nas_kd.config import SupernetConfig
from nas_kd.job import Job
from nas_kd.registry import Registry, split_component


@dataclass(kw_only=True)
class SupernetTrainer:
    """One supernet training method; its options are its dataclass fields.

    Call order: built once from ``supernet.mode`` where the recipe or the API call is read (a bad option fails
    there); :meth:`check` with the ``supernet`` section and the epochs, before any work; then :meth:`train` on a
    :class:`~nas_kd.job.Job`, into its run directory, returning the final metrics (``final.json``, with
    ``checkpoint``). ``weight_sharing``: every subnet inherits working weights from the checkpoint (a search
    scores subnets with them, the export starts from them); False for a blockwise supernet, whose archs are scored
    from ranking tables and whose student trains from its own init.
    """

    weight_sharing: ClassVar[bool] = True

    def stages_needed(self, n_stages: int) -> int:
        """How many teacher stages it pairs with a supernet of ``n_stages`` stages. Default: 0."""
        return 0

    def check(self, cfg: SupernetConfig, epochs: int) -> None:
        """The method's checks that need the ``supernet`` section (its space) and the epochs it trains for. Default:
        none."""

    def train(self, job: Job, cfg: SupernetConfig, *, resume: bool = False, on_step: Callable[..., None] | None = None,
              show_progress: bool = True) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


SUPERNET_TRAINERS: Registry[SupernetTrainer] = Registry("supernet.mode")


def mode_name(trainer: SupernetTrainer) -> str:
    """The registered name of a built supernet method."""
    return next(n for n in SUPERNET_TRAINERS.available() if type(trainer) is SUPERNET_TRAINERS.get(n))


def supernet_trainer(spec: str | dict[str, Any], where: str = "supernet.mode") -> SupernetTrainer:
    """The method a ``supernet.mode`` value names, built with its options (checked)."""
    name, options = split_component(spec, where, SUPERNET_TRAINERS)
    SUPERNET_TRAINERS.get_for(name, where)
    return SUPERNET_TRAINERS.build_checked(name, options, f"{where} ({name})")
