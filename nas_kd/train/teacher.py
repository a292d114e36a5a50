"""Train a teacher (the reference ResNet or any model factory) with plain cross-entropy."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from nas_kd.checkpoint import save_checkpoint
from nas_kd.config import Recipe
from nas_kd.flops import count_flops, count_params
from nas_kd.provenance import write_result
from nas_kd.teacher import build_model
from nas_kd.train.common import evaluate, to_memory_format
from nas_kd.train.loop import LoopState
from nas_kd.train.setup import build_loop, start_run


def train_teacher(
    recipe: Recipe,
    *,
    resume: bool = False,
    on_step: Callable[[LoopState], None] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Train ``recipe.teacher.model`` on ``recipe.data``; returns the final metrics.

    Writes into the run directory: ``config.yaml``, ``metrics.jsonl``, ``checkpoints/last.pt``,
    ``teacher.pt`` (state dict usable as ``teacher.checkpoint``) and ``final.json``.
    """
    started, run, data = start_run(recipe, resume)
    model = build_model(recipe.teacher, data.num_classes, data.in_channels)
    loop = build_loop(recipe, run, data, model, resume=resume, on_step=on_step, show_progress=show_progress)
    opt, cl = loop.optimizer, recipe.train.channels_last

    def step(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        logits = model(to_memory_format(x, cl))
        loss = F.cross_entropy(logits, y, label_smoothing=recipe.train.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n = len(y)
        return {"loss": loss.item() * n, "acc": (logits.argmax(1) == y).sum().item(), "count": n}

    def validate(epoch: int) -> dict[str, float]:
        return {f"val_{k}": v for k, v in evaluate(model, data.val, recipe.data.eval_batch_size, cl).items()}

    metrics = loop.fit(step, validate)
    test = evaluate(model, data.test, recipe.data.eval_batch_size, cl)
    model = model.to(memory_format=torch.contiguous_format)
    save_checkpoint({"model": model.state_dict()}, run.path / "teacher.pt")
    shape = (1, data.in_channels, data.image_size, data.image_size)
    final = {
        "model": recipe.teacher.model,
        "dataset": recipe.data.dataset,
        "epochs": recipe.train.epochs,
        "seed": recipe.seed,
        "test_acc": test["acc"],
        "test_loss": test["loss"],
        "val_acc": metrics[-1]["val_acc"] if metrics else None,
        "accuracy_kind": "last epoch",
        "flops": count_flops(model, shape),
        "params": count_params(model),
        "checkpoint": str(run.path / "teacher.pt"),
    }
    return write_result(run.path / "final.json", final, loop.state.elapsed, started)
