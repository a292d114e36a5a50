"""Self-distillation, no external teacher: ``byot`` (auxiliary heads) and ``sad`` (attention of the next stage)."""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Distiller, Probe, View
from nas_kd.features import capture
from nas_kd.flops import count_flops, prefix_flops
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast2, Index, NonNegative, Positive, Probability


def _student_stages(d: Distiller, stages: list[str] | None, student_stages: list[str] | None, least: int) -> list[str]:
    chosen = stages or [s for s in (student_stages or []) if s != "stem"]
    if len(chosen) < least:
        raise d.error(f"needs at least {least} student stages (give stages: [...] for a student without known stages)")
    return list(chosen)


class _OwnStages(Distiller):
    """A self-distillation method reading the student's own stage outputs (``self.stages``)."""

    needs_teacher = False
    stages: list[str] | None

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        self.stages = _student_stages(self, self.stages, student_stages, 2)

    def student_modules(self) -> list[str]:
        return self.stages

    def stage_shapes(self, probe: Probe) -> list[tuple[int, ...]]:
        """The probed output shapes of the stages; each must be a 4-d feature map."""
        shapes = [probe.student_shapes[s] for s in self.stages]
        if any(len(s) != 4 for s in shapes):
            raise self.error(f"stages {self.stages} must output 4-d feature maps, got {[list(s) for s in shapes]}")
        return shapes


@DISTILLERS.register("byot")
class BYOT(_OwnStages):
    r"""Be your own teacher (Zhang et al., ICCV 2019): an auxiliary head (1x1 conv bottleneck to the
    last stage's width + BatchNorm + ReLU, global pooling, linear classifier) after every stage but the
    last. Each head i adds :math:`(1-\alpha)\,\mathrm{CE}(q_i, y) + \alpha\,T^2\,\mathrm{KL}(q_C\,\|\,q_i)
    + \lambda\,\|F_i - F_C\|_2^2`, where :math:`q_C` and :math:`F_C` are the student's own (detached)
    logits and pooled last-stage features. The heads are not exported with the student; the paper's anytime use of
    them is measured after training (:meth:`report`): each exit's test accuracy and MFLOPs, and early exit at
    confidence thresholds (an image leaves at the first head whose top softmax probability reaches ``exit_at``).

    Example: ``{name: byot, weight: 1.0, alpha: 0.3, lam: 0.03, temperature: 3}``.
    """

    def __init__(self, *, alpha: Probability = 0.3, lam: NonNegative = 0.03, temperature: Positive = 3.0,
                 stages: list[str] | None = None) -> None:
        super().__init__()
        self.alpha, self.lam, self.temperature, self.stages = float(alpha), float(lam), float(temperature), stages

    def bind(self, probe: Probe) -> None:
        shapes = self.stage_shapes(probe)
        width = shapes[-1][1]
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Conv2d(s[1], width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten()) for s in shapes[:-1])
        self.classifiers = nn.ModuleList(nn.Linear(width, probe.num_classes) for _ in shapes[:-1])

    EXITS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)  # the confidence thresholds of the early-exit report

    def report(self, model: nn.Module, split: Any, batch_size: int) -> dict[str, Any]:
        """Per exit (each head, then the student's own output): test accuracy and MFLOPs (the student up to that
        stage plus the head, fvcore); per confidence threshold: accuracy and mean MFLOPs when every image leaves at
        the first exit confident enough (the last exit takes the rest)."""
        self.cpu().eval()
        model = model.cpu().eval()
        shape = tuple(split.x[:1].shape[1:])
        probs = []
        with torch.no_grad():
            with capture(model, self.stages[:-1]) as f:
                model(torch.zeros(1, *shape))
            feat_shapes = [tuple(f[n].shape) for n in self.stages[:-1]]
            for i in range(0, len(split), batch_size):
                with capture(model, self.stages[:-1]) as f:
                    out = model(split.x[i:i + batch_size])
                heads = [clf(head(f[n].float())) for n, head, clf in zip(self.stages[:-1], self.heads, self.classifiers)]
                probs.append(torch.stack([F.softmax(z.float(), 1) for z in [*heads, out]]))
        p = torch.cat(probs, 1)  # exits x images x classes
        y = split.y
        upto = prefix_flops(model, (1, *shape), self.stages[:-1])
        mflops = [(a + count_flops(nn.Sequential(head, clf), s)) / 1e6
                  for a, head, clf, s in zip(upto, self.heads, self.classifiers, feat_shapes)]
        mflops.append(count_flops(model, (1, *shape)) / 1e6)
        right = p.argmax(2) == y  # exits x images
        confident = p.max(2).values
        early = []
        for t in self.EXITS:
            ok = confident >= t
            ok[-1] = True
            first = ok.float().argmax(0)  # the first exit confident enough
            cost = torch.tensor(mflops, dtype=torch.float64)[first]
            early.append({"exit_at": t, "acc": right[first, torch.arange(len(y))].float().mean().item(),
                          "mean_mflops": cost.mean().item(),
                          "share_per_exit": [(first == k).float().mean().item() for k in range(len(mflops))]})
        return {"exits": [{"after": n, "acc": a.item(), "mflops": m}
                          for n, a, m in zip([*self.stages[:-1], "output"], right.float().mean(1), mflops)],
                "early_exit": early, "images": len(y)}

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        deep_feat = view.feats[self.stages[-1]].float().mean((2, 3)).detach()
        deep_logits = view.logits.detach()
        ce, kd, feat = [], [], []
        for name, head, clf in zip(self.stages[:-1], self.heads, self.classifiers):
            f = head(view.feats[name].float())
            logits = clf(f)
            ce.append(F.cross_entropy(logits, view.y))
            kd.append(LF.kd_loss(logits, deep_logits, self.temperature))
            feat.append((f - deep_feat).pow(2).sum(1).mean())
        return {"byot_ce": (1 - self.alpha) * torch.stack(ce).sum(),
                "byot_kd": self.alpha * torch.stack(kd).sum(),
                "byot_feat": self.lam * torch.stack(feat).sum()}


@DISTILLERS.register("sad")
class SAD(_OwnStages):
    r"""Self attention distillation (Hou et al., ICCV 2019): each stage's spatial attention map
    (:func:`nas_kd.losses.functional.attention_map`, pooled to the next stage's size) mimics the
    next stage's, detached; mean squared difference summed over successive stage pairs. Off until
    ``start_epoch`` (the paper switches it on once the network has learned something). As in the paper, only the
    deeper layers take part: the ``deepest`` stages (3: two successive pairs), unless ``stages`` names them.

    Example: ``{name: sad, weight: 100, start_epoch: 1}``.
    """

    def __init__(self, *, start_epoch: Index = 0, p: Positive = 2.0, deepest: AtLeast2 = 3,
                 stages: list[str] | None = None) -> None:
        super().__init__()
        self.start_epoch, self.p, self.deepest, self.stages = start_epoch, float(p), deepest, stages

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        self.stages = self.stages[-self.deepest:]

    def bind(self, probe: Probe) -> None:
        self.stage_shapes(probe)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        if view.epoch < self.start_epoch:
            return {"sad": view.logits.new_zeros(())}
        losses = []
        for a, b in zip(self.stages[:-1], self.stages[1:]):
            fa, fb = view.feats[a].float(), view.feats[b].float().detach()
            fa = F.adaptive_avg_pool2d(fa, fb.shape[-2:])
            losses.append((LF.attention_map(fa, self.p) - LF.attention_map(fb, self.p)).pow(2).mean())
        return {"sad": torch.stack(losses).sum()}
