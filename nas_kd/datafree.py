"""``nas-kd synthesize``: training inputs made from the teacher alone (data-free distillation), by a method of
:data:`nas_kd.synthesis.SYNTHESIZERS` (``deepinversion``, ``impressions``, ``generator``; each file documents its
paper and its simplifications).

The inputs live in the normalised space of the recipe's data (the space the teacher was trained in); the dataset
written holds them as float32 with that normalisation (``mean``, ``std``) recorded, and ``data.synthetic`` trains on
it while the real test split (normalised alike) stays for evaluation. A method writes its batches one file each as
they finish (and its own state, if it trains something), so a killed run continues where it stopped; the dataset
file is assembled from the batches at the end.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from nas_kd.errors import UserError
from nas_kd.locks import holding
from nas_kd.provenance import Stopwatch, atomic_file, origin, write_result
from nas_kd.synthesis import SYNTHESIZERS, Synthesizer, Task
from nas_kd.synthesis.base import bn_layers

DATASET_FILE = "synthetic.npz"


def method_name(method: Synthesizer) -> str:
    return next(n for n in SYNTHESIZERS.available() if type(method) is SYNTHESIZERS.get(n))


def check_method(method: Synthesizer, teacher: nn.Module, student: nn.Module | None,
                 shape: tuple[int, int, int]) -> None:
    """What the method needs of the teacher and the student, refused in one line before any work."""
    name = method_name(method)
    if method.student == "required" and student is None:
        raise UserError(f"--method {name} trains a student against what it makes: give --student (e.g. resnet:min, "
                        "an arch JSON file or an exported student directory)")
    if method.needs_batchnorm:
        bn_layers(teacher)
    method.check(teacher, tuple(shape))


@holding("out")
def synthesize(teacher: nn.Module, *, method: Synthesizer, num_classes: int, shape: tuple[int, int, int],
               mean: torch.Tensor, std: torch.Tensor, out: str | Path, num_images: int, batch_size: int, seed: int = 0,
               student: nn.Module | None = None, show_progress: bool = True,
               info: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write ``num_images`` synthetic inputs made by ``method`` to ``out`` batch by batch, then
    ``out/synthetic.npz`` (``x`` float32 in the normalised space, ``y``, ``mean``, ``std``) and ``out/synthesis.json``
    (the method, its settings, the mean of every number its batches report, seconds per 1,000 images)."""
    started, watch = origin(), Stopwatch()
    check_method(method, teacher, student, shape)
    out = Path(out)
    (out / "batches").mkdir(parents=True, exist_ok=True)
    task = Task(teacher.eval(), num_classes, tuple(shape), num_images, batch_size, seed, out / "batches",
                student if method.student else None, lambda n: None)
    bar = tqdm(total=method.units(task), desc=f"synthesize ({method_name(method)})",
               disable=None if show_progress else True, dynamic_ncols=True)
    task.progress = bar.update
    method.run(task)
    bar.close()
    parts = [torch.load(task.batch_file(b), weights_only=True) for b in range(task.num_batches)]
    x = torch.cat([p["x"] for p in parts]).numpy().astype(np.float32)
    y = torch.cat([p["y"] for p in parts]).numpy().astype(np.int64)
    with atomic_file(out / DATASET_FILE) as tmp, open(tmp, "wb") as f:  # a killed write leaves none: made again
        np.savez(f, x=x, y=y, mean=mean.reshape(-1).numpy(), std=std.reshape(-1).numpy())
    reported = {k for p in parts for k, v in p.items() if k not in ("x", "y") and isinstance(v, numbers.Number)}
    record = {"num_images": int(len(y)), "batch_size": batch_size, "method": method_name(method),
              "settings": method.settings(), "seed": seed,
              "adaptive": task.student is not None and method.student == "optional",
              **{f"{k}_mean": float(np.mean([p[k] for p in parts])) for k in sorted(reported)},
              "dataset": str(out / DATASET_FILE), **(info or {})}
    record["seconds_per_1000_images"] = watch.seconds() * 1000 / max(1, len(y))
    return write_result(out / "synthesis.json", record, watch.seconds(), started)


def synthetic_validation_size(n: int) -> int:
    """How many of ``n`` synthetic images validate (the last tenth, at least one); the rest train."""
    return max(1, n // 10)


def load_synthetic(path: str | Path, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The inputs and labels of a synthetic dataset, refused when it was made under another normalisation than
    the real data's (``mean``, ``std``): the real test split would not be what the teacher saw."""
    try:
        with np.load(path, allow_pickle=False) as z:
            x, y, m, s = z["x"], z["y"], z["mean"], z["std"]
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"data.synthetic: {path} is not a dataset of nas-kd synthesize ({e})") from None
    if not (np.allclose(m, mean.reshape(-1).numpy(), atol=1e-4) and np.allclose(s, std.reshape(-1).numpy(), atol=1e-4)):
        raise UserError(f"data.synthetic: {path} was made under normalisation mean {m.tolist()} std {s.tolist()}, "
                        f"the recipe's data gives {mean.reshape(-1).tolist()} / {std.reshape(-1).tolist()}: "
                        "synthesize with the same data section")
    return torch.from_numpy(x), torch.from_numpy(y)
