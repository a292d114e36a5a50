"""Training-free evaluators: scores of a *randomly initialised* subnet, no supernet weights, no training.

Each builds the arch as a static network with a fixed seed (so a score is a function of the arch)
and looks at one small batch of probe images (the option ``batch``: how many, default 32):

* ``diswot`` - DisWOT (Dong et al., CVPR 2023): how similar the untrained student's semantics and
  sample relations already are to the teacher's; higher is better.
* ``naswot`` - NASWOT (Mellor et al., ICML 2021): log-determinant of the kernel of binary ReLU
  activation codes over the batch; higher is better.
* ``synflow`` - SynFlow (Tanaka et al., NeurIPS 2020; as a zero-cost proxy, Abdelfattah et al.,
  ICLR 2021): sum of |theta * dR/dtheta| with |theta| weights and an all-ones input; higher is better.
"""
from __future__ import annotations

import math
from typing import Annotated

import torch
import torch.nn as nn
import torch.nn.functional as F

from nas_kd.evaluators.base import EVALUATORS, Evaluator, SubnetView
from nas_kd.evaluators.context import EvalContext
from nas_kd.subnet import StaticNet, zero_init_residual
from nas_kd.typecheck import Range

INIT_SEED = 0


def random_subnet(ctx: EvalContext, arch: dict) -> StaticNet:
    """The arch as a static net with the seeded default initialisation (the same net for the same arch)."""
    space = ctx.space
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED)
        spec = space.spec(arch)
        return zero_init_residual(StaticNet(spec))


class TrainingFree(Evaluator):
    """Base of the training-free evaluators: ``batch`` probe images, no supernet weights."""

    reads_supernet = False

    def __init__(self, *, batch: Annotated[int, Range(2)] = 32) -> None:
        self.batch = batch

    def images(self, ctx: EvalContext) -> torch.Tensor:
        return ctx.probe[: self.batch].to(ctx.device)


def _gram(f: torch.Tensor) -> torch.Tensor:
    """Row-normalised batch Gram matrix of flattened features (sample relations)."""
    f = F.normalize(f.flatten(1).double(), dim=1)
    return F.normalize(f @ f.T, dim=1)


def cam_at(model: nn.Module, layer: str, x: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM maps (Selvaraju et al. 2017) ``(n, h, w)`` of ``classes`` at ``layer``,
    relu(sum_c mean_hw(dy/dA_c) A_c) unnormalised, and the layer's globally pooled features ``(n, c)``.

    The modules before ``layer`` run without autograd and only the part after it is differentiated,
    for dy/dA alone (no weight gradients), so the model's parameters and their ``.grad`` are untouched."""
    store = {}

    def keep(_m, _i, out):
        store["a"] = out.detach().requires_grad_()
        torch.set_grad_enabled(True)  # from here on; the no_grad block below restores the caller's mode
        return store["a"]

    handle = dict(model.named_modules())[layer].register_forward_hook(keep)
    try:
        with torch.no_grad():
            y = model(x).gather(1, classes[:, None]).sum()
            (grad,) = torch.autograd.grad(y, store["a"])
    finally:
        handle.remove()
    a = store["a"].detach()
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * a).sum(1))
    return cam, a.float().mean((2, 3))


def diswot_distance(t_map: torch.Tensor, t_feat: torch.Tensor, s_map: torch.Tensor, s_feat: torch.Tensor) -> float:
    """Semantic distance (mean squared distance of L2-normalised maps of the same size) plus relation distance
    (squared Frobenius distance of the row-normalised batch Gram matrices of the features, / batch size^2)."""
    t_vec, s_vec = F.normalize(t_map.flatten(1).double(), dim=1), F.normalize(s_map.flatten(1).double(), dim=1)
    semantic = (t_vec - s_vec).pow(2).sum(1).mean()
    relation = (_gram(t_feat) - _gram(s_feat)).pow(2).sum() / len(t_feat) ** 2
    return float(semantic + relation)


@EVALUATORS.register("diswot")
class DisWOT(TrainingFree):
    """DisWOT-style teacher-student similarity without training: minus the sum of (1) the mean squared
    distance between the teacher's and the untrained student's Grad-CAM maps of the teacher's predicted
    classes at the last stage (semantic similarity; maps average-pooled to the smaller size) and (2) the
    squared Frobenius distance between their row-normalised sample-relation Gram matrices of the
    pooled last-stage features, divided by the batch size squared (relation similarity)."""

    def stages_needed(self, n_stages: int) -> int:
        return 1  # the teacher's last stage

    def prepare(self, ctx: EvalContext) -> None:
        ctx.require_stages(1, f"evaluator {self.name or 'diswot'}", False)
        self.teacher_semantics = ctx.memo(("diswot", self.batch), lambda: teacher_semantics(ctx, self.images(ctx)))

    def raw(self, view: SubnetView) -> float:
        ctx = view.ctx
        x = self.images(ctx)
        t_map, t_feat, classes = self.teacher_semantics
        student = random_subnet(ctx, view.arch).to(ctx.device).eval()
        s_map, s_feat = cam_at(student, student.stage_names[-1], x, classes)
        if t_map.shape[-2:] != s_map.shape[-2:]:
            size = min(t_map.shape[-2:], s_map.shape[-2:])
            t_map, s_map = F.adaptive_avg_pool2d(t_map[:, None], size)[:, 0], F.adaptive_avg_pool2d(s_map[:, None], size)[:, 0]
        return -diswot_distance(t_map, t_feat, s_map, s_feat)


def teacher_semantics(ctx: EvalContext, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On the images ``x``: the teacher's Grad-CAM maps of its predicted classes at its last stage, its pooled
    last-stage features, and those classes."""
    ctx.teacher_outputs  # noqa: B018  (refuses a TorchScript teacher, whose stages cannot be hooked)
    with torch.no_grad():
        classes = ctx.teacher(x).argmax(1)
    return (*cam_at(ctx.teacher, ctx.teacher_stages[-1], x, classes), classes)


@EVALUATORS.register("naswot")
class NASWOT(TrainingFree):
    """NASWOT (Mellor et al., ICML 2021): with c_i the binary code of which ReLUs fire for image i,
    K_ij = <c_i, c_j> + <1 - c_i, 1 - c_j>; the score is log|det K| (higher: inputs are told apart)."""

    def raw(self, view: SubnetView) -> float:
        ctx = view.ctx
        return naswot_score(random_subnet(ctx, view.arch).to(ctx.device).eval(), self.images(ctx))


def naswot_score(net: nn.Module, x: torch.Tensor) -> float:
    """log|det K| of the binary ReLU-code kernel of ``net`` on the batch ``x`` (-inf if two codes coincide).

    K is summed layer by layer as K += C C^T + (1 - C)(1 - C)^T = 2 C C^T - s_i - s_j + d for the layer's
    (n, d) 0/1 codes C with row sums s: integers, exact in float32 below 2^24 units per entry."""
    n = len(x)
    k = torch.zeros(n, n, dtype=torch.float64)

    def add(_m, _i, out):
        c = (out > 0).flatten(1).float()
        s = c.sum(1)
        k.add_((2 * (c @ c.T) - s[:, None] - s[None, :] + c.shape[1]).double())

    hooks = [m.register_forward_hook(add) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            net(x)
    finally:
        for h in hooks:
            h.remove()
    return float(torch.linalg.slogdet(k)[1])


@EVALUATORS.register("synflow")
class SynFlow(Evaluator):
    """SynFlow (Tanaka et al. 2020): R = sum(f_{|theta|}(1)) in float64 with BatchNorm as the identity
    (eval mode, default statistics); the score is log(sum |theta * dR/dtheta|) over conv/linear weights."""

    reads_supernet = False

    def raw(self, view: SubnetView) -> float:
        ctx = view.ctx
        return synflow_score(random_subnet(ctx, view.arch), tuple(ctx.probe.shape[1:]))


def synflow_score(net: nn.Module, input_shape: tuple[int, ...]) -> float:
    """log(sum |theta * dR/dtheta|) over conv/linear weights of ``net`` run in float64 with |theta| weights and
    eval-mode BatchNorm, R = sum of the outputs for an all-ones input. The weights are swapped in by
    ``functional_call``, so ``net`` itself (its weights, grads and mode) is untouched."""
    weights = [f"{name}.weight" for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    params = {k: v.detach().double().abs().requires_grad_() for k, v in net.named_parameters()}
    buffers = {k: v.double() if v.is_floating_point() else v for k, v in net.named_buffers()}
    training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            r = torch.func.functional_call(net, (params, buffers), (torch.ones(1, *input_shape, dtype=torch.float64),))
            grads = torch.autograd.grad(r.sum(), [params[k] for k in weights])
    finally:
        net.train(training)
    total = sum((params[k] * g).abs().sum() for k, g in zip(weights, grads))
    return math.log(float(total.detach()) + 1e-300)
