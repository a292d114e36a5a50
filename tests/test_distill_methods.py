"""The distillers of issue 24, each against its own math on tiny synthetic data: zero (or minimal) where the
student already matches, extra parameters trained only by their own terms, peers all trained."""
import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F

from nas_kd.data import load_dataset
from nas_kd.distill import View, build_distiller
from nas_kd.distill.base import Term
from nas_kd.distill.kdcl import ensemble_logits
from nas_kd.errors import OptionError
from nas_kd.export import load_subnet
from nas_kd.features import capture
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.recipes import distill
from nas_kd.train.distill import probe
from conftest import TEACHER_KW
from test_distill import min_student, recipe, setup_one, view_of

STAGES = ["stem", "stage1", "stage2", "stage3", "stage4"]


def self_view(name, options, synthetic_root):
    """A distiller bound with the teacher's own twin as the student, and the view of one batch where the student's
    outputs are exactly the teacher's."""
    data = load_dataset("fashion-mnist", synthetic_root, val_size=64)
    torch.manual_seed(0)
    teacher = ResNetTeacher(**TEACHER_KW).eval().requires_grad_(False)
    d = build_distiller(Term(name, 1.0, options, f"distill[0] ({name})"))
    probe(teacher, [teacher], [d], STAGES, [STAGES], data)
    x, y = data.train.x[:16], data.train.y[:16]
    with capture(teacher, STAGES) as f:
        logits = teacher(x)
    feats = dict(f)
    return d, View(y, logits, feats, [logits], [feats]), feats


def test_fsp_is_zero_when_the_flows_match(synthetic_root):
    d, view, _ = self_view("fsp", {}, synthetic_root)
    with torch.no_grad():
        for c in d.connectors:  # identity connectors: the student's maps are the teacher's
            c.weight.copy_(torch.eye(c.weight.shape[0])[:, :, None, None])
    assert d(view)["fsp"].item() == pytest.approx(0.0, abs=1e-10)
    view.feats = {k: v * 1.5 for k, v in view.feats.items()}
    assert d(view)["fsp"].item() > 0


def test_irg_is_zero_when_the_graphs_match(synthetic_root):
    d, view, _ = self_view("irg", {}, synthetic_root)
    assert all(v.item() == pytest.approx(0.0, abs=1e-10) for v in d(view).values())
    view.feats = {k: v + torch.randn_like(v) for k, v in view.feats.items()}
    assert d(view)["irg_edge"].item() > 0 and d(view)["irg_transform"].item() > 0


def test_vid_is_minimal_where_the_regressor_predicts_the_teacher(synthetic_root):
    d, view, feats = self_view("vid", {"which": "last"}, synthetic_root)
    t = feats["stage4"]
    class Fixed(torch.nn.Module):
        def __init__(self, out):
            super().__init__()
            self.out = out

        def forward(self, s):
            return self.out

    mu = t.clone().requires_grad_(True)
    d.regressors[0] = Fixed(mu)  # the Gaussian's mean is the teacher's map
    loss = d(view)["vid"]
    loss.backward()
    assert loss.item() == pytest.approx(0.5 * torch.log(d.variance(0)).mean().item(), rel=1e-5)
    assert mu.grad.abs().max().item() < 1e-12  # the likelihood is at its maximum in the mean
    mu2 = (t + 0.5).requires_grad_(True)
    d.regressors[0] = Fixed(mu2)
    assert d(view)["vid"].item() > loss.item()


def test_adversarial_terms_train_only_their_own_side(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, bundle, opt, data = setup_one("adversarial", synthetic_root, teacher_ckpt, tmp_path)
    terms = d(view_of(model, teachers, d, data))
    terms["adv_g"].backward(retain_graph=True)
    assert all(p.grad is None for p in d.discriminator.parameters())  # fooling it does not train it
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)
    terms["adv_d"].backward()
    assert all(p.grad is None for p in model.parameters())  # telling them apart does not train the student
    assert all(p.grad is not None for p in d.discriminator.parameters())


def test_kdcl_ensembles():
    z = torch.tensor([[[2.0, 0.0, 1.0]], [[0.5, 0.0, 3.0]]])  # 2 peers, 1 sample, 3 classes
    y = torch.tensor([0])
    assert torch.allclose(ensemble_logits(z, y, "mean"), torch.tensor([[1.25, 0.0, 2.0]]))
    assert torch.allclose(ensemble_logits(z, y, "min-logit"), torch.tensor([[0.0, -2.0, -1.0]]))
    assert torch.equal(ensemble_logits(z, y, "best"), z[0])  # peer 0 is surer of the true class
    same = torch.randn(3, 4, 5)
    d = build_distiller(Term("kdcl", 1.0, {"ensemble": "mean"}, "t"))
    view = View(torch.zeros(4, dtype=torch.long), same[0], {}, peer_logits=[same[0], same[0]])
    assert d(view)["kdcl"].item() == pytest.approx(0.0, abs=1e-6)  # peers that agree teach nothing new


def test_kdcl_trains_every_peer(synthetic_root, teacher_ckpt, tmp_path):
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, "distill=[{name: kdcl, students: 3}]", "data.limit_train=64")
    final = distill(r, min_student(), show_progress=False)
    peers = [load_subnet(tmp_path / "run" / d).state_dict() for d in ("student", "student1", "student2")]
    init = min_student().make((1, 28, 28), 10)  # any fresh copy differs from each trained peer
    assert len(final["students_test_acc"]) == 3
    assert all(any(not torch.equal(p[k], init.state_dict()[k]) for k in p) for p in peers)
    assert json.loads((tmp_path / "run" / "final.json").read_text())["distill"][0]["name"] == "kdcl"


def test_kdcl_gives_each_peer_its_own_augmentation_of_the_batch(synthetic_root, teacher_ckpt, tmp_path):
    x = torch.randn(6, 1, 28, 28)
    pad = torch.full((1,), -1.0)
    same = build_distiller(Term("kdcl", 1.0, {}, "t"))
    assert same.student_input(x, 1, torch.Generator().manual_seed(0), pad) is x  # the paper's views off: as loaded
    d = build_distiller(Term("kdcl", 1.0, {"views_pad": 2, "views_flip": True}, "t"))
    a, b = (d.student_input(x, i, torch.Generator().manual_seed(i), pad) for i in (0, 1))
    assert a.shape == x.shape and not torch.equal(a, b) and not torch.equal(a, x)
    assert torch.equal(a, d.student_input(x, 0, torch.Generator().manual_seed(0), pad))  # drawn from the seed only
    seen: list[list] = []  # through the trainer: each peer trains on its own view of the step's batch
    base = min_student()

    def make(*shape):
        net = base.make(*shape)
        inputs = []
        net.register_forward_pre_hook(lambda m, args: inputs.append(args[0].clone()) if m.training else None)
        seen.append(inputs)
        return net
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, "distill=[{name: kdcl, students: 2, views_pad: 2}]",
               "data.limit_train=64")
    distill(r, dataclasses.replace(base, make=make), show_progress=False)
    assert len(seen) == 2 and seen[0][0].shape == seen[1][0].shape and not torch.equal(seen[0][0], seen[1][0])


def test_sad_pairs_only_the_deepest_stages_by_default():
    d = build_distiller(Term("sad", 1.0, {}, "t"))
    d.resolve(["stem", "stage1", "stage2", "stage3", "stage4"], [], 0)
    assert d.stages == ["stage2", "stage3", "stage4"]
    named = build_distiller(Term("sad", 1.0, {"stages": ["stage1", "stage2"]}, "t"))
    named.resolve(["stem", "stage1", "stage2", "stage3", "stage4"], [], 0)
    assert named.stages == ["stage1", "stage2"]


def test_adanas_learns_the_mixing_weights_on_validation():
    d = build_distiller(Term("multi_teacher", 1.0, {"weights": "learned"}, "t"))
    assert d.uses_validation
    y = torch.arange(200) % 10
    good = torch.nn.functional.one_hot(y, 10).float() * 5  # a teacher that is right
    bad = torch.randn(200, 10)  # one that guesses
    d.fit_validation([bad, good], y)
    assert d.weights[1] > 0.9 and abs(sum(d.weights) - 1) < 1e-6
    with pytest.raises(Exception, match="'learned'"):
        build_distiller(Term("multi_teacher", 1.0, {"weights": "learnt"}, "t"))


def test_adanas_weights_are_fitted_when_training_starts(synthetic_root, teacher_ckpt, tmp_path, monkeypatch):
    from nas_kd.distill.response import MultiTeacher

    fitted = []
    original = MultiTeacher.fit_validation
    monkeypatch.setattr(MultiTeacher, "fit_validation", lambda self, t, y: fitted.append(len(t)) or original(self, t, y))
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, "distill=[{name: multi_teacher, weights: learned}]",
               "data.limit_train=64", f"extra_teachers=[{{model: resnet_fmnist, kwargs: {json.dumps(TEACHER_KW)}, "
               f"checkpoint: {teacher_ckpt}}}]")
    distill(r, min_student(), show_progress=False)
    assert fitted == [2]


def test_dfa_architecture_weights_move_only_on_validation_batches(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, bundle, opt, data = setup_one("dfa", synthetic_root, teacher_ckpt, tmp_path)
    assert all(len(d.candidates[t]) >= 2 for _, t in d.pairs)  # the stage output and its BatchNorm maps
    alphas = [a.detach().clone() for a in d.alphas]
    connector = [p.detach().clone() for p in d.connectors.parameters()]
    opt.zero_grad()
    d(view_of(model, teachers, d, data))["dfa"].backward()
    opt.step()
    assert all(torch.equal(a, b) for a, b in zip(alphas, d.alphas))  # a training batch leaves them
    assert any(not torch.equal(a, b) for a, b in zip(connector, d.connectors.parameters()))
    connector = [p.detach().clone() for p in d.connectors.parameters()]
    d.validation_step(view_of(model, teachers, d, data))
    assert all(not torch.equal(a, b) for a, b in zip(alphas, d.alphas))  # a validation batch moves them
    assert all(torch.equal(a, b) for a, b in zip(connector, d.connectors.parameters()))  # and nothing else


def test_sla_aggregates_the_joint_head_over_rotations(synthetic_root, teacher_ckpt, tmp_path):
    from nas_kd.losses.functional import kd_loss

    model, teachers, d, bundle, opt, data = setup_one("sla", synthetic_root, teacher_ckpt, tmp_path)
    with torch.no_grad():  # joint logit of (class c, rotation k) = c + 10 k, whatever the input
        d.joint.weight.zero_()
        d.joint.bias.copy_(torch.tensor([c + 10.0 * k for c in range(10) for k in range(4)]))
    view = view_of(model, teachers, d, data)
    terms = d(view)
    want = kd_loss(view.logits, (torch.arange(10.0) + 15.0).expand(len(view.y), 10), 1.0)  # mean over k of c + 10 k
    assert terms["sla_sd"].item() == pytest.approx(want.item(), rel=1e-5)
    assert terms["sla_joint"].item() > 0


def test_kdsvd_is_zero_for_the_teachers_twin_and_width_free(synthetic_root):
    from nas_kd.distill.kdsvd import align, rbf_relation, singular_vectors

    d, view, feats = self_view("kdsvd", {"k": 2}, synthetic_root)
    assert d(view)["kdsvd"].item() == pytest.approx(0.0, abs=1e-6)  # the student's vectors include the teacher's
    f = feats["stage3"]
    wide = torch.cat([f, f[:, :3]], 1)[:, torch.randperm(f.shape[1] + 3)]  # other width: columns added, permuted
    a, b = singular_vectors(f, 2, (4, 4)), singular_vectors(torch.cat([f, f], 1), 2, (4, 4))
    assert torch.allclose(a.abs(), b.abs(), atol=1e-4)  # duplicated channels: the same spatial vectors and shares
    assert singular_vectors(wide, 5, (4, 4)).shape == (16, 5, 16)
    flipped = torch.cat([-a[:, 1:], a[:, :1], torch.zeros_like(a[:, :1])], 1)  # reordered, one sign flipped, padded
    assert torch.allclose(align(flipped, a), a, atol=1e-6)
    r = rbf_relation(torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 3.0]]]), gamma=2.0)
    assert torch.allclose(r[0, 0], torch.exp(-torch.tensor([[1.0, 9.0], [0.0, 4.0]]) / 2))  # hand-computed


def test_kdsvd_trains_the_student_with_finite_gradients(synthetic_root):
    d, view, feats = self_view("kdsvd", {}, synthetic_root)
    student = {k: (v + 0.3 * torch.randn_like(v)).requires_grad_(True) for k, v in feats.items()}
    loss = d(View(view.y, view.logits, student, view.teacher_logits, view.teacher_feats))["kdsvd"]
    loss.backward()
    grads = [student[n].grad for n in d.s_stages]
    assert loss.item() > 0 and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(v.grad is None for n, v in student.items() if n not in d.s_stages)


def test_kdsvd_gradient_through_the_svd_is_safe_per_sample():
    from nas_kd.distill.kdsvd import singular_vectors, tame

    g = torch.ones(4, 2, 3)
    g[1] *= 1000.0  # an exploding sample
    g[2, 0, 0] = float("nan")  # a sample with a non-finite entry
    out = tame(g, 10.0)
    norms = out.flatten(1).norm(dim=1)
    median = torch.tensor(6.0).sqrt()  # the finite samples' norms: sqrt(6) twice and 1000 sqrt(6)
    assert torch.equal(out[0], g[0]) and torch.equal(out[3], g[3])  # ordinary samples untouched
    assert norms[1].item() == pytest.approx(10 * median.item(), rel=1e-5) and torch.equal(out[2], torch.zeros(2, 3))
    f = torch.randn(5, 4, 6, 6, requires_grad=True)  # through singular_vectors: the hook runs, the gradient stays
    singular_vectors(f, 2, (3, 3), clip=10.0).pow(2).sum().backward()
    assert torch.isfinite(f.grad).all()


def test_one_is_a_gated_ensemble_of_branches_teaching_each_branch(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, _, _, data = setup_one("one", synthetic_root, teacher_ckpt, tmp_path,
                                               {"branches": 3, "temperature": 2.0})
    assert d.branch_at == "stage3" and len(d.extra) == 2  # the min resnet arch: stem, stage1..4
    view = view_of(model, teachers, d, data)
    trunk = view.feats["stage3"].float()
    z, e = d.outputs(trunk, view.logits)
    g = F.softmax(d.gate(trunk), 1)
    assert torch.allclose(e, sum(g[:, i:i + 1] * z[i] for i in range(3)), atol=1e-5)
    assert torch.allclose(z[1], d.extra[0](trunk)) and torch.equal(z[0], view.logits.float())
    terms = d(view)
    p = F.softmax(e.detach() / 2, 1)
    by_hand = sum(4 * (p * (p.log() - F.log_softmax(zi / 2, 1))).sum(1).mean() for zi in z)
    assert torch.allclose(terms["one_kd"], by_hand, rtol=1e-5)
    ce = sum(F.cross_entropy(zi, view.y) for zi in z[1:]) + F.cross_entropy(e, view.y)
    assert torch.allclose(terms["one_ce"], ce, rtol=1e-5)
    terms["one_ce"].backward()  # the shared trunk learns from the other branches and the ensemble
    assert model.stem[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.gate.parameters())  # the gate learns from the ensemble's CE
    for branch in d.extra:  # branches that are the student's own tail make the ensemble the student: nothing to teach
        branch.load_state_dict(torch.nn.Sequential(model.stage4, model.head).state_dict())
    assert d(view_of(model, teachers, d, data))["one_kd"].item() == pytest.approx(0.0, abs=1e-5)
    report = d.report(model, data.test, 64)
    assert len(report["branches_acc"]) == 3 and 0 <= report["ensemble_acc"] <= 1


@pytest.mark.parametrize("options, match", [({"branch_at": "stage4"}, "not one of the student's stages before its last"),
                                            ({"branch_at": "stage9"}, "branch_at 'stage9'")])
def test_one_refuses_a_branch_point_that_is_not_a_trunk_stage(options, match, synthetic_root, teacher_ckpt, tmp_path):
    with pytest.raises(OptionError, match=match):
        setup_one("one", synthetic_root, teacher_ckpt, tmp_path, options)


def test_rco_is_kd_from_each_anchor_of_the_route_in_turn(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, _, _, data = setup_one("rco", synthetic_root, teacher_ckpt, tmp_path, {"epochs_per_anchor": 2})
    assert d.route == [1, 0]  # the extra teacher (an earlier checkpoint), then the teacher
    assert [d.anchor(e) for e in range(6)] == [1, 1, 0, 0, 0, 0]
    for epoch, k in ((0, 1), (3, 0)):
        view = view_of(model, teachers, d, data, epoch=epoch)
        kd = build_distiller(Term("kd", 1.0, {"temperature": 4.0, "teacher": k}, "kd"))
        assert torch.allclose(d(view)["rco"], kd(view)["kd"])
        matched = View(view.y, view.teacher_logits[k], {}, view.teacher_logits, [], epoch=epoch)
        assert d(matched)["rco"].item() == pytest.approx(0.0, abs=1e-5)  # the student on the anchor's logits


@pytest.mark.parametrize("options, match", [({"route": [0]}, "route of at least two"),
                                            ({"route": [2, 0]}, "route names teacher 2")])
def test_rco_refuses_a_route_the_recipe_cannot_give(options, match, synthetic_root, teacher_ckpt, tmp_path):
    with pytest.raises(OptionError, match=match):
        setup_one("rco", synthetic_root, teacher_ckpt, tmp_path, options)
