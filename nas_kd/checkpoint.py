"""Atomic, safe checkpoints: written via temp file + rename, read with ``weights_only=True``; supernet
checkpoints (weights plus what rebuilds the supernet: space, input shape, classes)."""
from __future__ import annotations

import os
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch

import search_spaces
from nas_kd.errors import UserError
from nas_kd.provenance import atomic_file
from nas_kd.subnet import shape_text


class CheckpointError(UserError):
    """A checkpoint is missing, truncated or not one of ours; the message names the file."""


FORMAT = "nas_kd.checkpoint.v1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically to ``path``.

    A crash mid-write leaves the previous file intact: the data goes to a temp file in the
    same directory, is flushed to disk, then renamed over ``path``.
    """
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        torch.save({"format": FORMAT, **state}, f)
        f.flush()
        os.fsync(f.fileno())


def load_checkpoint(path: str | Path, *, require_format: bool = True) -> dict[str, Any]:
    """Load a checkpoint without unpickling arbitrary objects.

    With ``require_format`` the file must have been written by :func:`save_checkpoint`;
    without it a plain state dict is accepted too (e.g. a user's teacher weights).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError, zipfile.BadZipFile, AttributeError,
            LookupError, struct.error) as e:  # what decoding a truncated / foreign file raises (not MemoryError)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or foreign file?): {reason}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    if require_format and state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a nas_kd checkpoint (format {state.get('format')!r}, expected {FORMAT!r})")
    return state


def model_state(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model weights in a nas_kd checkpoint, or ``state`` itself if it is a plain state dict."""
    if state.get("format") == FORMAT:
        return state["model"]
    return state


def save_supernet(net, path: str | Path, **extra: Any) -> None:
    """Save a :class:`nas_kd.supernet.Supernet`'s weights and construction metadata atomically."""
    save_checkpoint({"model": net.state_dict(), "supernet": net.meta(), **extra}, path)


def load_supernet(path: str | Path, input_shape: tuple[int, int, int] | None = None):
    """Rebuild a supernet from a checkpoint written by :func:`save_supernet` or a supernet trainer.

    ``input_shape``: the (C, H, W) of the data it will see; a supernet trained for another shape is refused
    with both shapes named. Checkpoints from before shapes were recorded are 28 x 28."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("supernet")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: a nas_kd checkpoint, but not of a supernet (no 'supernet' metadata)")
    space = search_spaces.from_meta(meta)
    if input_shape is not None and tuple(input_shape) != space.input_shape:
        raise UserError(f"{path}: the supernet was trained for {shape_text(space.input_shape)} inputs, but the "
                        f"data is {shape_text(input_shape)}; train a supernet for this data (nas-kd train-supernet)")
    net = space.build_supernet(kernel_transform=meta["kernel_transform"])
    try:
        net.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{path}: weights do not fit the {meta['space']!r} supernet: {e}") from None
    return net
