"""``crd``: contrastive representation distillation (Tian, Krishnan & Isola, "Contrastive Representation
Distillation", ICLR 2020)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, View
from nas_kd.distill.feature import FeaturePairs, Pairs, Which
from nas_kd.typecheck import AtLeast1, Index, Positive


@DISTILLERS.register("crd")
class CRD(FeaturePairs):
    r"""The student's representation of a sample is pulled to the teacher's representation of the same sample and
    pushed from the teacher's representations of other samples, and vice versa: the globally pooled last-stage
    features are embedded (a learned linear map per side, L2-normalised, ``dim`` wide) and each side's embedding is
    classified against the other side's positive among ``negatives`` embeddings of past samples kept in a memory,
    at temperature ``temperature``. The memory is a first-in first-out queue of each side's detached embeddings of
    the latest batches (a buffer: saved and resumed with the run). Simplifications, named: the paper's memory is
    indexed by dataset sample and updated with momentum 0.5, and its objective is NCE with a constant partition
    estimate; here the memory is the queue and the objective the softmax form (InfoNCE), which its authors report
    as a variant. Heads and memory are never exported.

    Example: ``[{name: kd, weight: 0.9}, {name: crd, weight: 0.8}]`` (RepDistiller's CIFAR weights for CRD+KD).
    """

    default_which, needs_maps, key = "last", False, "crd"

    def __init__(self, *, dim: AtLeast1 = 128, negatives: AtLeast1 = 4096, temperature: Positive = 0.07,
                 pairs: Pairs | None = None, which: Which | None = None, teacher: Index = 0) -> None:
        super().__init__(pairs=pairs, which=which, teacher=teacher)
        self.dim, self.negatives, self.temperature = int(dim), int(negatives), float(temperature)

    def build(self, shapes) -> None:
        if len(shapes) != 1:
            raise self.error(f"contrasts one pair of representations, got {len(shapes)} pairs")
        (s, t), = shapes
        width = lambda shape: shape[1]  # noqa: E731  (channels of a map, or a flat feature's size)
        self.embed_s, self.embed_t = nn.Linear(width(s), self.dim), nn.Linear(width(t), self.dim)
        g = torch.Generator().manual_seed(0)
        for side in ("s", "t"):
            self.register_buffer(f"memory_{side}", F.normalize(torch.randn(self.negatives, self.dim, generator=g), dim=1))
        self.register_buffer("position", torch.zeros((), dtype=torch.long))

    @staticmethod
    def _pool(f: torch.Tensor) -> torch.Tensor:
        return f.mean((2, 3)) if f.ndim == 4 else f.flatten(1)

    def _push(self, es: torch.Tensor, et: torch.Tensor) -> None:
        n = min(len(es), self.negatives)
        rows = (self.position + torch.arange(n, device=es.device)) % self.negatives
        for side, e in (("memory_s", es), ("memory_t", et)):  # new tensors: the step's graph holds the old ones
            memory = getattr(self, side).clone()
            memory[rows] = e[:n].detach()
            setattr(self, side, memory)
        self.position = (self.position + n) % self.negatives

    def contrast(self, anchor: torch.Tensor, positive: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        """InfoNCE of each anchor against its positive (column 0) and the memory's embeddings."""
        logits = torch.cat([(anchor * positive).sum(1, keepdim=True), anchor @ memory.t()], dim=1) / self.temperature
        return F.cross_entropy(logits, torch.zeros(len(anchor), dtype=torch.long, device=anchor.device))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        s_name, t_name = self.pairs[0]
        es = F.normalize(self.embed_s(self._pool(view.feats[s_name].float())), dim=1)
        et = F.normalize(self.embed_t(self._pool(view.teacher_feats[self.teacher][t_name].detach().float())), dim=1)
        loss = self.contrast(es, et, self.memory_t) + self.contrast(et, es, self.memory_s)
        if torch.is_grad_enabled():  # a training step: this batch joins the memory after it has been contrasted
            self._push(es, et)
        return {self.key: loss}
