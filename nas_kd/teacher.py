"""Load any model as a frozen teacher: a built-in name, a ``package.module:function`` factory (e.g.
``torchvision.models:resnet18`` with your own weights), or TorchScript. Nothing is ever downloaded."""
from __future__ import annotations

import importlib
import inspect
from typing import Callable

import torch
import torch.nn as nn

from nas_kd.checkpoint import CheckpointError, load_checkpoint, model_state
from nas_kd.config import TeacherConfig
from nas_kd.data import DataBundle
from nas_kd.errors import UserError
from nas_kd.job import check_preprocess, freeze, Teacher
from nas_kd.models import MODELS


def resolve_factory(spec: str, where: str = "teacher.model") -> Callable[..., nn.Module]:
    """A built-in model name, or ``package.module:function`` importable from ``sys.path``; an error names ``where``."""
    if ":" not in spec:
        return MODELS.get(spec)
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise UserError(f"{where} {spec!r}: cannot import {module_name!r} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UserError(f"{where} {spec!r}: {module_name} has no callable {attr!r}")
    return factory


DOWNLOADING_KWARGS = ("weights", "pretrained", "weights_backbone")  # torchvision's ways to fetch weights


def build_model(cfg: TeacherConfig, num_classes: int, in_channels: int) -> nn.Module:
    """The (untrained) model a :class:`TeacherConfig` describes: the factory is called with ``num_classes``,
    with ``in_channels`` only if it names that parameter (torchvision's models do not: they take 3 channels),
    and with ``teacher.kwargs``. A kwarg that would download weights is refused."""
    for key in DOWNLOADING_KWARGS:
        if cfg.kwargs.get(key) not in (None, False):
            raise UserError(f"teacher.kwargs.{key}={cfg.kwargs[key]!r} would download weights, which nas_kd never "
                            "does: leave it unset and give your weights file as teacher.checkpoint")
    factory = resolve_factory(cfg.model)
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # a builtin without a signature: call it and let it speak
        signature = None
    named = signature.parameters if signature is not None else {}
    given = {"num_classes": num_classes, **({"in_channels": in_channels} if "in_channels" in named else {})}
    if signature is not None:
        try:
            signature.bind(**given, **cfg.kwargs)
        except TypeError as e:
            raise UserError(f"teacher.model {cfg.model!r} cannot be built with "
                            f"{sorted({**given, **cfg.kwargs})}: {e}") from None
    return factory(**given, **cfg.kwargs)  # an error inside the factory is a bug there: it keeps its traceback


def load_teacher(cfg: TeacherConfig, num_classes: int = 10, in_channels: int = 1) -> nn.Module:
    """The trained teacher, frozen (``requires_grad=False``) and in eval mode."""
    if cfg.subnet:
        from nas_kd.export import load_subnet

        model = load_subnet(cfg.subnet)
    elif cfg.torchscript:
        try:
            model = torch.jit.load(cfg.torchscript, map_location="cpu")
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"{cfg.torchscript}: not a loadable TorchScript file ({e})") from None
    else:
        if not cfg.checkpoint:
            raise UserError("teacher.checkpoint is required to load a trained teacher (or set teacher.torchscript)")
        model = build_model(cfg, num_classes, in_channels)
        weights = model_state(load_checkpoint(cfg.checkpoint, require_format=False))
        try:
            model.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(f"{cfg.checkpoint}: weights do not fit teacher.model={cfg.model!r}: {e}") from None
    return freeze(model)


def teacher_from(cfg: TeacherConfig, data: DataBundle) -> Teacher:
    """The :class:`~nas_kd.job.Teacher` a ``teacher`` section describes for ``data`` (loaded on first use)."""
    return Teacher(lambda: load_teacher(cfg, data.num_classes, data.in_channels), list(cfg.stages),
                   cfg.subnet or cfg.torchscript or cfg.checkpoint,
                   check_preprocess(cfg.preprocess)).for_data(data)
