"""DNA blockwise supervision (Li et al., CVPR 2020), the model: stage i of the supernet learns to map the
teacher's stage i-1 output to the teacher's stage i output (the trainer is :mod:`nas_kd.train.blockwise`).

Each supernet stage is wrapped with two learned 1x1 adapters that never reach an exported subnet:
``inp`` maps the teacher's stage i-1 features to the stage's largest input width (every candidate
of the stage is fed that width, so a candidate's loss does not depend on the previous stage's
choice and stage losses add up), and ``out`` maps the candidate's output width to the teacher's
stage i channels. Loss: per-element MSE, as in DNA. Per step every stage trains the sandwich of
its own candidates (largest, smallest and ``num_random`` random ones). The stages share no
parameters, so training them in one loop on one teacher pass is the same as training them one
after another, at a third of the teacher cost. Teacher features are computed on the fly: cached
features of the augmented training set would take ~5 GB for stage 1 alone.
"""
from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn as nn

import search_spaces
from nas_kd.errors import UserError
from nas_kd.features import capture
from nas_kd.layers import DynamicConv2d
from nas_kd.supernet import DynamicStage


def teacher_channels(teacher: nn.Module, stages: list[str], input_shape: tuple[int, int, int]) -> list[int]:
    """Output channels of each named teacher stage (one forward pass on zeros of one ``input_shape`` image)."""
    with torch.no_grad(), capture(teacher, stages) as feats:
        teacher(torch.zeros(1, *input_shape, device=next(teacher.parameters()).device))
    return [feats[s].shape[1] for s in stages]


class BlockwiseSupernet(nn.Module):
    """The supernet's stages, each between an input and an output adapter, trained stage by stage."""

    def __init__(self, space, teacher_widths: list[int], kernel_transform: bool = False) -> None:
        super().__init__()
        if len(teacher_widths) != len(space.stages) + 1:
            raise UserError(f"blockwise training needs {len(space.stages) + 1} teacher stages (the input of "
                             f"stage 1 and the output of every stage), got {len(teacher_widths)}")
        self.space, self.teacher_widths = space, list(teacher_widths)
        net = space.build_supernet(kernel_transform=kernel_transform)
        self.stages = nn.ModuleList([getattr(net, n) for n in net.stage_names])
        self.inp = nn.ModuleList()
        self.out = nn.ModuleList()
        for i in range(1, len(space.stages) + 1):
            cin = space.stage_input_width(i)
            self.inp.append(nn.Sequential(nn.Conv2d(teacher_widths[i - 1], cin, 1, bias=False), nn.BatchNorm2d(cin),
                                          nn.ReLU()))
            self.out.append(DynamicConv2d(max(space.stages[i - 1].widths), teacher_widths[i]))

    def activate(self, stage: int, cand: dict[str, Any]) -> DynamicStage:
        """Make ``cand`` the active path of stage ``stage`` (1-based); returns the stage module."""
        module: DynamicStage = self.stages[stage - 1]
        module.active = self.space.stage_blocks(stage, cand, self.space.stage_input_width(stage))
        return module

    def stage_forward(self, stage: int, cand: dict[str, Any], x: torch.Tensor) -> torch.Tensor:
        """Candidate ``cand`` of stage ``stage`` on teacher features ``x``, mapped to the teacher's width."""
        return self.out[stage - 1](self.activate(stage, cand)(self.inp[stage - 1](x)))

    def meta(self) -> dict[str, Any]:
        return {"space": self.space.name, "input_shape": list(self.space.input_shape), "num_classes": self.space.num_classes,
                "teacher_widths": self.teacher_widths}


def stage_io(teacher: nn.Module, stages: list[str], x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """For each supernet stage i (1-based), its (input, target): the teacher's stage i-1 and stage i outputs."""
    with torch.no_grad(), capture(teacher, stages) as feats:
        teacher(x)
    return [(feats[stages[i - 1]].float(), feats[stages[i]].float()) for i in range(1, len(stages))]


def stage_sandwich(space, stage: int, rng: random.Random, num_random: int) -> list[dict[str, Any]]:
    """Largest, smallest and ``num_random`` random candidates of one stage."""
    labels = space.stage_labels(stage)
    pick = lambda arch: {lbl: arch[lbl] for lbl in labels}  # noqa: E731
    return [pick(space.max_arch()), pick(space.min_arch())] + [pick(space.sample(rng)) for _ in range(num_random)]


def load_blockwise(path, teacher_widths: list[int] | None = None) -> BlockwiseSupernet:
    """Rebuild a blockwise supernet from a checkpoint of :func:`nas_kd.train.blockwise.train_blockwise`."""
    from nas_kd.checkpoint import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path)
    meta = ckpt.get("blockwise")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: a nas_kd checkpoint, but not of a blockwise supernet")
    model = BlockwiseSupernet(search_spaces.from_meta(meta), meta["teacher_widths"])
    model.load_state_dict(ckpt["model"])
    return model
