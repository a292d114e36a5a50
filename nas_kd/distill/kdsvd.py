"""``kdsvd``: knowledge from singular value decomposition (Lee, Kim & Song, "Self-supervised Knowledge Distillation
Using Singular Value Decomposition", ECCV 2018)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from nas_kd.distill.base import DISTILLERS, Probe, View
from nas_kd.distill.feature import StageChain
from nas_kd.typecheck import AtLeast1, Index, Positive


def tame(grad: torch.Tensor, clip: float) -> torch.Tensor:
    """The gradient reaching a batch through its SVD, made safe per sample as the authors' SVD gradient does: a
    sample with a non-finite entry gets none (the authors' ``crop_removenan``), and a sample's gradient norm is cut
    to ``clip`` times the batch's median sample norm (near-equal singular values make ``1 / (s_i^2 - s_j^2)``
    explode without becoming infinite; the authors truncate the gradient to the leading vectors instead)."""
    flat = grad.flatten(1)
    finite = torch.isfinite(flat).all(1)
    flat = torch.where(finite[:, None], flat, torch.zeros_like(flat))
    norms = flat.norm(dim=1)
    cap = clip * norms[finite].median() if finite.any() else norms.new_tensor(0.0)
    scale = torch.where(norms > cap, cap / norms.clamp_min(1e-30), torch.ones_like(norms))
    return (flat * scale[:, None]).view_as(grad)


def singular_vectors(f: torch.Tensor, k: int, size: tuple[int, int], clip: float | None = None) -> torch.Tensor:
    """The top ``k`` left singular vectors of a feature map ``f`` (batch, channels, h, w) average-pooled to
    ``size``, read as a (positions x channels) matrix per image: (batch, k, positions), each unit length and
    scaled by its singular value's share of the ``k`` (unit-normalised singular values). ``clip``: the gradient
    back through the SVD is made safe per sample (:func:`tame`)."""
    x = F.adaptive_avg_pool2d(f.float(), size).flatten(2).transpose(1, 2)  # batch x positions x channels
    if clip is not None and x.requires_grad:
        x.register_hook(lambda g: tame(g, clip))
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    k = min(k, u.shape[-1])
    return u[..., :k].transpose(1, 2) * F.normalize(s[:, :k], dim=1, eps=1e-12)[..., None]


def align(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Singular vectors have no sign: for each teacher vector, the student vector most parallel to it (largest
    |cosine|), with the sign that makes the cosine positive. ``student``: (batch, k + extra, d); ``teacher``: (batch,
    k, d); returns (batch, k, d)."""
    cos = F.normalize(teacher, dim=2, eps=1e-12) @ F.normalize(student, dim=2, eps=1e-12).transpose(1, 2)
    best = cos.abs().argmax(2)  # batch x k
    sign = torch.sign(cos.gather(2, best[..., None])).detach()
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return student.gather(1, best[..., None].expand(-1, -1, student.shape[2])) * sign


def rbf_relation(a: torch.Tensor, b: torch.Tensor, gamma: float) -> torch.Tensor:
    """exp(-(a_i - b_j)^2 / gamma) between every entry of each singular vector of ``a`` and of the same vector of
    ``b`` (batch, k, d) -> (batch, k, d, d): how two depths' vectors relate, entry by entry."""
    return torch.exp(-(a[..., :, None] - b[..., None, :]).pow(2) / gamma)


@DISTILLERS.register("kdsvd")
class KDSVD(StageChain):
    r"""The knowledge of a depth is its feature map's top singular vectors, compressed by SVD; what is transferred is
    how the vectors of successive depths relate (a radial-basis kernel between their entries,
    :func:`rbf_relation`), the student's relations pulled to the teacher's by squared error. The student takes
    ``k + 3`` vectors and each teacher vector is matched with its most parallel one, sign corrected
    (:func:`align`), as the paper does. The depths are the deepest ``stages`` of both sides, paired from the end.

    Adaptations, named: the paper's student shares the teacher's widths and compares right (channel) singular
    vectors; here the widths differ, so the left (spatial) singular vectors are used, which do not depend on the
    width; every map is first average-pooled to the deepest pair's resolution so that all depths compare over the
    same positions. The gradient back through the student's SVD is made safe per sample (:func:`tame`, ``clip``:
    samples with a non-finite gradient get none, as in the authors' SVD gradient; a sample's norm is cut to ``clip``
    x the batch median, where the authors truncate the gradient to the leading vectors; without it one seed of
    three diverged at epoch 4 of the distillation table, 74.2 % against 88.9 %); a non-finite relation counts
    zero.

    Example: ``[{name: kd, weight: 0.9}, {name: kdsvd, weight: 1.0}]``.
    """

    def __init__(self, *, k: AtLeast1 = 1, gamma: Positive = 8.0, clip: Positive = 10.0, teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        self.k, self.gamma, self.clip = int(k), float(gamma), float(clip)

    def bind(self, probe: Probe) -> None:
        s, t = self.stage_shapes(probe)
        self.size = tuple(min(x[d] for x in s + t) for d in (2, 3))

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t = [singular_vectors(view.teacher_feats[self.teacher][n].detach(), self.k, self.size) for n in self.t_stages]
        s = [align(singular_vectors(view.feats[n], self.k + 3, self.size, self.clip), v)
             for n, v in zip(self.s_stages, t)]
        losses = []
        for i in range(1, len(s)):
            gap = (rbf_relation(s[i], s[i - 1], self.gamma) - rbf_relation(t[i], t[i - 1], self.gamma)).pow(2)
            losses.append(torch.where(torch.isfinite(gap), gap, torch.zeros_like(gap)).mean())
        return {"kdsvd": torch.stack(losses).mean()}
