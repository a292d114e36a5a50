"""Response-based (logit) distillation from one or several fixed teachers: ``kd``, ``alpha_div``, ``multi_teacher``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from typing import Annotated, Literal

from nas_kd.distill.base import DISTILLERS, Distiller, View
from nas_kd.errors import OptionError
from nas_kd.losses import functional as LF
from nas_kd.typecheck import AtLeast1, Check, Index, NonEmpty, NonNegative, Positive


class _OneTeacher(Distiller):
    """Reads the logits of teacher number ``teacher`` (0: the recipe's ``teacher``, 1..: ``extra_teachers``)."""

    logits_only = True

    def __init__(self, *, teacher: Index = 0) -> None:
        super().__init__()
        self.teacher = teacher


@DISTILLERS.register("kd")
class KD(_OneTeacher):
    r"""Hinton KD (Hinton, Vinyals & Dean, 2015): :math:`T^2\,\mathrm{KL}(\sigma(t/T)\,\|\,\sigma(s/T))`.

    Example: ``{name: kd, weight: 0.9, temperature: 4}``.
    """

    pure_loss = staticmethod(LF.kd_loss)

    def __init__(self, *, temperature: Positive = 4.0, teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        self.temperature = float(temperature)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        return {"kd": LF.kd_loss(view.logits, view.teacher_logits[self.teacher], self.temperature)}


@DISTILLERS.register("alpha_div")
class AlphaDiv(_OneTeacher):
    r"""AlphaNet's adaptive alpha-divergence (Wang et al., "AlphaNet", ICML 2021).

    With q = softmax(student), p = softmax(teacher) (temperature 1, detached), w = p / q:

    * D_a = sum_c q_c (v_c - 1) / (a (a - 1)), v = clamp(w^a, 0, iw_clip), for a general alpha;
    * D_0 = sum_c q_c (-log clamp(w, 0, iw_clip))  (KL(q || p)) when |a| < 1e-3;
    * D_1 = sum_c q_c w_c log w_c = KL(p || q), unclipped, when |a - 1| < 1e-3.

    Per sample the larger of D_{alpha_min} and D_{alpha_max} is picked (ties: alpha_max); the loss
    is the batch mean of the picked divergence (>= 0, a true divergence). Its gradient is that of
    the clipped estimator (:func:`nas_kd.losses.functional.alpha_divergence`).

    Example: ``{name: alpha_div, alpha_min: -1, alpha_max: 1, iw_clip: 5}``.
    """

    pure_loss = staticmethod(LF.alpha_divergence)

    def __init__(self, *, alpha_min: float = -1.0, alpha_max: float = 1.0, iw_clip: Positive = 5.0,
                 teacher: Index = 0) -> None:
        super().__init__(teacher=teacher)
        if alpha_min > alpha_max:
            raise OptionError(f"need alpha_min <= alpha_max, got {alpha_min} > {alpha_max}")
        self.alpha_min, self.alpha_max, self.iw_clip = float(alpha_min), float(alpha_max), float(iw_clip)

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t = view.teacher_logits[self.teacher]
        return {"alpha_div": LF.alpha_divergence(view.logits, t, self.alpha_min, self.alpha_max, self.iw_clip)}


@DISTILLERS.register("multi_teacher", example={"confidence": True})
class MultiTeacher(Distiller):
    r"""KD from the weighted mean of several teachers' soft labels (You et al., KDD 2017; confidence
    weights as in CA-MKD, Zhang et al., ICASSP 2022).

    :math:`p = \sum_k w_k\,\sigma(t_k/T)`, loss :math:`T^2\,\mathrm{KL}(p\,\|\,\sigma(s/T))`. ``weights``
    fixes :math:`w` (normalised to sum 1; default equal); ``confidence: true`` weighs each sample by
    :math:`w_k(x) = \mathrm{softmax}_k(-\mathrm{CE}(t_k(x), y))`, so the teacher that is surer of the
    true class counts more. With identical teachers this equals ``kd``. ``weights: learned`` fits them on the
    validation split before training (AdaNAS, Macko et al., 2019: an ensemble of earlier students whose mixing
    weights are learned with the members frozen; :meth:`fit_validation`).

    Example: ``{name: multi_teacher, weight: 0.9, temperature: 4, confidence: true}``.
    """

    logits_only = True

    def __init__(self, *, temperature: Positive = 4.0,
                 weights: Annotated[list[NonNegative], NonEmpty(), Check(lambda w: sum(w) > 0, "have a positive sum")]
                 | Literal["learned"] | None = None,
                 confidence: bool = False, fit_steps: AtLeast1 = 200) -> None:
        super().__init__()
        self.uses_validation, self.fit_steps = weights == "learned", fit_steps
        if weights is not None and confidence:
            raise OptionError("give either weights or confidence: true, not both")
        self.temperature, self.weights, self.confidence = float(temperature), weights, bool(confidence)

    def resolve(self, student_stages, teacher_stages, num_teachers: int) -> None:
        super().resolve(student_stages, teacher_stages, num_teachers)
        if isinstance(self.weights, list) and len(self.weights) != num_teachers:
            raise self.error(f"weights has {len(self.weights)} entries for {num_teachers} teacher(s)")

    def fit_validation(self, teacher_logits: list[torch.Tensor], y: torch.Tensor) -> None:
        """AdaNAS (Macko et al., 2019): the ensemble's mixing weights w = softmax(theta) that minimise the
        cross-entropy of sum_k w_k softmax(t_k) on the validation split (``fit_steps`` Adam steps, members frozen)."""
        probs = torch.stack([torch.softmax(t.float(), dim=1) for t in teacher_logits])  # K x N x C
        theta = torch.zeros(len(teacher_logits), requires_grad=True)
        opt = torch.optim.Adam([theta], lr=0.1)
        for _ in range(self.fit_steps):
            opt.zero_grad()
            mix = (torch.softmax(theta, 0)[:, None, None] * probs).sum(0)
            F.nll_loss(mix.clamp_min(1e-12).log(), y).backward()
            opt.step()
        self.weights = torch.softmax(theta.detach(), 0).tolist()

    def forward(self, view: View) -> dict[str, torch.Tensor]:
        t = torch.stack([tl.detach().float() for tl in view.teacher_logits])  # K x B x C
        if self.confidence:
            ce = torch.stack([F.cross_entropy(tk, view.y, reduction="none") for tk in t])  # K x B
            w = torch.softmax(-ce, dim=0)[..., None]
        else:
            if isinstance(self.weights, str):
                raise self.error("weights: learned are fitted on the validation split by the distill trainer")
            raw = torch.tensor(self.weights or [1.0] * len(t), dtype=t.dtype, device=t.device)
            w = (raw / raw.sum())[:, None, None]
        p = (w * torch.softmax(t / self.temperature, dim=2)).sum(0)
        log_q = F.log_softmax(view.logits.float() / self.temperature, dim=1)
        loss = F.kl_div(log_q, p.clamp_min(1e-12).log(), reduction="batchmean", log_target=True)
        return {"multi_teacher": loss * self.temperature**2}
