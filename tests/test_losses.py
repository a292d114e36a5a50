"""Contract tests every pure distillation loss passes (nas_kd.losses.functional), plus golden values."""
import math

import pytest
import torch
import torch.nn.functional as F

import search_spaces
from nas_kd.distill import DISTILLERS
from nas_kd.errors import UserError
from nas_kd.features import capture
from nas_kd.losses import functional as LF
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.supernet import Supernet

# every distiller that applies one pure loss of (student, teacher) declares it: its contract runs here
PURE = {n: DISTILLERS.get(n) for n in DISTILLERS.available() if DISTILLERS.get(n).pure_loss is not None}
LOGIT_LOSSES = {n: d.pure_loss for n, d in PURE.items() if d.logits_only}
FEATURE_LOSSES = {n: d.pure_loss for n, d in PURE.items() if not d.logits_only}


def make(name):
    return {**LOGIT_LOSSES, **FEATURE_LOSSES}[name]


def inputs(name, scale=1.0, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (8, 10) if name in LOGIT_LOSSES else (8, 6, 5, 5)
    s = (torch.randn(shape, generator=g) * scale).to(dtype).requires_grad_()
    t = (torch.randn(shape, generator=g) * scale).to(dtype).requires_grad_()
    return s, t


def test_the_pure_losses_are_found():
    assert {"kd", "alpha_div", "dist", "logit_std"} <= set(LOGIT_LOSSES)
    assert {"hint", "at", "sp", "rkd", "pkt", "cc", "nst"} <= set(FEATURE_LOSSES)


@pytest.mark.parametrize("name", sorted({**LOGIT_LOSSES, **FEATURE_LOSSES}))
def test_contract_finite_positive_student_only_gradients(name):
    loss = make(name)
    s, t = inputs(name)
    value = loss(s, t)
    assert value.ndim == 0 and torch.isfinite(value) and value.item() > 0
    value.backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None  # the teacher side is detached


@pytest.mark.parametrize("name", sorted({**LOGIT_LOSSES, **FEATURE_LOSSES}))
def test_contract_zero_when_student_equals_teacher(name):
    s, _ = inputs(name)
    assert abs(make(name)(s, s.detach().clone()).item()) < 1e-5


@pytest.mark.parametrize("name", sorted({**LOGIT_LOSSES, **FEATURE_LOSSES}))
@pytest.mark.parametrize("scale,dtype", [(1e4, torch.float32), (1e-8, torch.float32), (30.0, torch.float16), (1e3, torch.bfloat16)])
def test_contract_stable_for_extreme_inputs(name, scale, dtype):
    s, t = inputs(name, scale, dtype)
    value = make(name)(s, t)
    assert value.dtype == torch.float32 and torch.isfinite(value)
    value.backward()
    assert torch.isfinite(s.grad.float()).all()


def test_kd_golden_value():
    s = torch.tensor([[1.0, 2.0, 3.0]])
    t = torch.tensor([[3.0, 2.0, 1.0]])
    p, q = F.softmax(t / 2, 1), F.softmax(s / 2, 1)
    expected = 4 * (p * (p.log() - q.log())).sum()
    assert torch.allclose(LF.kd_loss(s, t, temperature=2), expected)


def kl(a, b):  # KL(a || b) for probability rows
    return (a * (a.log() - b.log())).sum(1)


def test_alpha_limits_reduce_to_kl():
    s, t = torch.randn(16, 10) * 0.3, torch.randn(16, 10) * 0.3
    q, p = F.softmax(s, 1), F.softmax(t, 1)
    # clip large enough to be inactive
    assert torch.allclose(LF.alpha_divergence(s, t, 0, 0, iw_clip=1e6), kl(q, p).mean(), atol=1e-6)
    assert torch.allclose(LF.alpha_divergence(s, t, 1, 1), kl(p, q).mean(), atol=1e-6)
    # the general formula approaches the limits continuously
    assert math.isclose(LF.alpha_divergence(s, t, 0.01, 0.01, iw_clip=1e6).item(), kl(q, p).mean().item(), rel_tol=0.05)
    assert math.isclose(LF.alpha_divergence(s, t, 0.99, 0.99, iw_clip=1e6).item(), kl(p, q).mean().item(), rel_tol=0.05)


def test_alpha_hand_computed_and_picks_the_larger():
    s, t = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])  # q = (.5,.5), p = (.75,.25)
    # alpha = -1: D = sum q (w^-1 - 1) / 2, w = (1.5, 0.5): (0.5*(2/3-1) + 0.5*(2-1)) / 2 = 1/6
    assert math.isclose(LF.alpha_divergence(s, t, -1, -1).item(), 1 / 6, rel_tol=1e-5)
    # alpha = 0.5: D = sum q (sqrt(w) - 1) / (-0.25)
    d_half = (0.5 * (math.sqrt(1.5) - 1) + 0.5 * (math.sqrt(0.5) - 1)) / -0.25
    assert math.isclose(LF.alpha_divergence(s, t, 0.5, 0.5).item(), d_half, rel_tol=1e-5)
    assert math.isclose(LF.alpha_divergence(s, t, -1, 0.5).item(), max(1 / 6, d_half), rel_tol=1e-5)
    # clipping: w^-1 = 2 clipped at 1.5 -> (0.5*(2/3-1) + 0.5*(1.5-1)) / 2
    assert math.isclose(LF.alpha_divergence(s, t, -1, -1, iw_clip=1.5).item(), (0.5 * (2 / 3 - 1) + 0.25) / 2, rel_tol=1e-5)


@pytest.mark.parametrize("alpha", [-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
def test_alpha_gradient_matches_autograd_when_unclipped(alpha):
    s = (torch.randn(6, 5) * 0.5).double()
    t = (torch.randn(6, 5) * 0.5).double()
    s1 = s.clone().float().requires_grad_()
    LF.alpha_divergence(s1, t.float(), alpha, alpha, iw_clip=1e6).backward()
    s2 = s.clone().requires_grad_()
    logq, logp = F.log_softmax(s2, 1), F.log_softmax(t, 1)
    q, p = logq.exp(), logp.exp()
    if alpha == 0.0:
        ref = (q * (logq - logp)).sum(1).mean()
    elif alpha == 1.0:
        ref = (p * (logp - logq)).sum(1).mean()
    else:
        ref = ((q * ((logp - logq) * alpha).exp()).sum(1) - 1).mean() / (alpha * (alpha - 1))
    ref.backward()
    assert torch.allclose(s1.grad.double(), s2.grad, atol=1e-5)


def test_alpha_arguments():
    alpha = DISTILLERS.get("alpha_div")
    assert alpha(alpha_min=0, alpha_max=0).alpha_min == 0.0  # 0 is a value, not "unset"
    with pytest.raises(UserError, match="alpha_min <= alpha_max"):
        alpha(alpha_min=1, alpha_max=0)
    with pytest.raises(ValueError, match="alpha_min <= alpha_max"):
        LF.alpha_divergence(torch.zeros(1, 2), torch.zeros(1, 2), 1, 0)


def test_rkd_and_sp_are_scale_free_in_the_teacher():
    s, t = inputs("sp")
    assert torch.allclose(LF.similarity_preserving(s, t), LF.similarity_preserving(s, t * 100), atol=1e-5)
    assert torch.allclose(LF.rkd_loss(s, t), LF.rkd_loss(s, t * 100), atol=1e-5)


def test_capture_features_by_name():
    teacher = ResNetTeacher(widths=(8, 8, 8, 8)).eval()
    net = Supernet(search_spaces.get("mbv2"))
    x = torch.randn(2, 1, 28, 28)
    with capture(teacher, ["stage2", "stage4"]) as tf, capture(net, ["stage2"]) as sf:
        teacher(x)
        net(x)
    assert tf["stage2"].shape == (2, 8, 14, 14) and tf["stage4"].shape == (2, 8, 4, 4)
    assert sf["stage2"].shape[-1] == 14
    assert not teacher.stage2._forward_hooks  # removed on exit
    with pytest.raises(KeyError, match="no submodule 'stage5'; close matches: stage"):
        with capture(teacher, ["stage5"]):
            pass


def test_dkd_with_beta_the_teachers_non_target_mass_is_kd():
    # Zhao et al.'s eq. (2): KD = TCKD + (1 - p_target of the teacher) NCKD, sample by sample
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        s, t, y = torch.randn(1, 10, generator=g) * 3, torch.randn(1, 10, generator=g) * 3, torch.randint(10, (1,), generator=g)
        rest = 1 - F.softmax(t / 4, dim=1)[0, y].item()
        assert LF.dkd_loss(s, t, y, 1.0, rest, 4.0).item() == pytest.approx(LF.kd_loss(s, t, 4.0).item(), rel=1e-5)
    s, t, y = torch.randn(8, 10, generator=g), torch.randn(8, 10, generator=g), torch.randint(10, (8,), generator=g)
    assert LF.dkd_loss(s, s.clone(), y).abs().item() < 1e-6
    # the decoupled parts: alpha alone sees only the target-vs-rest split, beta alone only the non-target classes
    t_same_rest = s.clone()
    t_same_rest[torch.arange(8), y] += 2.0  # changes the target probability, not the non-target distribution
    assert LF.dkd_loss(s, t_same_rest, y, 0.0, 1.0).abs().item() < 1e-6 and LF.dkd_loss(s, t_same_rest, y, 1.0, 0.0) > 0


def test_dist_ignores_a_positive_linear_map_of_the_predictions_per_sample():
    g = torch.Generator().manual_seed(2)
    t = torch.randn(6, 10, generator=g)
    p_t = F.softmax(t / 4, dim=1)
    s = 4 * torch.log(0.5 * p_t + 0.05)  # softmax(s / 4) = 0.5 p_t + 0.5 / 10: perfectly correlated per sample
    assert LF.dist_loss(s, t, beta=1.0, gamma=0.0).item() < 1e-5
    assert LF.dist_loss(torch.randn(6, 10, generator=g), t, beta=1.0, gamma=0.0).item() > 0.1


def test_logit_std_ignores_each_samples_logit_shift_and_scale():
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    a, b = torch.rand(6, 1, generator=g) * 5 + 0.1, torch.randn(6, 1, generator=g) * 10
    assert LF.logit_std_kd(a * s + b, t).item() == pytest.approx(LF.logit_std_kd(s, t).item(), rel=1e-4)
    assert LF.logit_std_kd(s, 7 * t - 3).item() == pytest.approx(LF.logit_std_kd(s, t).item(), rel=1e-4)


def test_relational_losses_compare_batches_of_any_width_and_ignore_feature_scale():
    g = torch.Generator().manual_seed(4)
    s, t = torch.randn(8, 6, 4, 4, generator=g), torch.randn(8, 12, 2, 2, generator=g)
    scale = torch.rand(8, 1, 1, 1, generator=g) + 0.5
    for loss in (LF.pkt_loss, LF.cc_loss):  # per-sample scale: both normalise each embedding
        assert loss(s * scale, t).item() == pytest.approx(loss(s, t).item(), rel=1e-4)
    # NST: each channel's spatial pattern is normalised, so a positive scale per channel changes nothing
    t4 = torch.randn(8, 12, 4, 4, generator=g)
    assert LF.nst_loss(s * torch.rand(1, 6, 1, 1, generator=g).add(0.5), t4).item() == pytest.approx(LF.nst_loss(s, t4).item(), rel=1e-4)
    # and two batches whose samples relate alike are at zero for PKT and CC even at different widths
    rot = torch.linalg.qr(torch.randn(12, 12, generator=g))[0]
    e = torch.randn(8, 6, generator=g)
    wide = torch.cat([e, torch.zeros(8, 6)], dim=1) @ rot  # 12 wide, the same inner products
    for loss in (LF.pkt_loss, LF.cc_loss):
        assert loss(e, wide).item() < 1e-5


def test_pkt_hand_computed_on_two_samples():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # orthogonal: kernel rows (1, 0.5)
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # identical: kernel rows (1, 1)
    ps, pt = torch.tensor([2 / 3, 1 / 3]), torch.tensor([0.5, 0.5])
    expected = (pt * (pt.log() - ps.log())).sum().item()  # the same for both rows
    assert LF.pkt_loss(s, t).item() == pytest.approx(expected, rel=1e-4)
