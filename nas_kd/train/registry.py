"""Supernet training methods, chosen by ``supernet.mode`` (:data:`SUPERNET_TRAINERS`), a name or
``{name, ...options}`` (the options are the method's keyword-only constructor arguments, checked when the recipe
loads). Registered when :mod:`nas_kd.train` is imported: ``sandwich`` and ``spos`` (:mod:`nas_kd.train.supernet`,
:mod:`nas_kd.train.spos`), ``progressive`` (:mod:`nas_kd.train.progressive`), ``cream`` (:mod:`nas_kd.train.cream`)
and ``blockwise`` (:mod:`nas_kd.train.blockwise`)."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

from nas_kd.config import SupernetConfig
from nas_kd.distill import parse_terms
from nas_kd.job import Job
from nas_kd.registry import Registry, split_component
from search_spaces import SAMPLERS, SPACES


class SupernetTrainer:
    """One supernet training method.

    ``train(job, cfg, *, resume, on_step, show_progress)`` trains the ``supernet`` section ``cfg`` on a
    :class:`~nas_kd.job.Job` into its run directory and returns its final metrics (``final.json``, with ``checkpoint``). ``weight_sharing``: every subnet inherits working weights
    from the checkpoint (a search scores subnets with them, the export starts from them); False for a
    blockwise supernet, whose archs are scored from ranking tables and whose student trains from its own init.
    """

    weight_sharing: ClassVar[bool] = True

    def check(self, cfg: SupernetConfig, epochs: int) -> None:
        """The method's own checks of the ``supernet`` section and the epochs it trains for (when the recipe
        loads, and again before training). Default: none."""

    def train(self, job: Job, cfg: SupernetConfig, *, resume: bool = False, on_step: Callable[..., None] | None = None,
              show_progress: bool = True) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError


SUPERNET_TRAINERS: Registry[SupernetTrainer] = Registry("supernet.mode")


def mode_name(spec: str | dict[str, Any]) -> str:
    """The method's name of a ``supernet.mode`` value."""
    return split_component(spec, "supernet.mode", SUPERNET_TRAINERS)[0]


def supernet_trainer(spec: str | dict[str, Any]) -> SupernetTrainer:
    """The trainer a ``supernet.mode`` value names, built with its options (checked)."""
    name, options = split_component(spec, "supernet.mode", SUPERNET_TRAINERS)
    SUPERNET_TRAINERS.get_for(name, "supernet.mode")
    return SUPERNET_TRAINERS.build_checked(name, options, f"supernet.mode ({name})")


def check_supernet(cfg: SupernetConfig, epochs: int) -> None:
    """Every name a ``supernet`` section picks, checked before any work (a recipe when it loads, a Python call when
    it starts): the mode and its own checks (for ``epochs`` of training), the space, the sampler and the logit
    ``distill`` terms."""
    supernet_trainer(cfg.mode).check(cfg, epochs)
    SPACES.get_for(cfg.space, "supernet.space")
    SAMPLERS.check_options(cfg.sampler, {}, "supernet.sampler", given=("space",))
    parse_terms(cfg.distill, "supernet.distill", logits_only=True)

