"""Distillers (contract per registered method), recipe-load errors, and the distill trainer (tiny synthetic data)."""
import json

import pytest
import torch

import search_spaces
from conftest import TEACHER_KW
from nas_kd.cli import main
from nas_kd.config import load_recipe
from nas_kd.data import load_dataset
from nas_kd.distill import DISTILLERS, View, build_distiller, parse_terms
from nas_kd.distill.base import Term
from nas_kd.errors import OptionError
from nas_kd.export import load_subnet
from nas_kd.models.resnet_teacher import ResNetTeacher
from nas_kd.students import arch_student
from nas_kd.train.common import build_optimizer
from nas_kd.recipes import distill
from nas_kd.train.distill import Students, probe

def recipe(tmp_path, root, teacher_ckpt, *extra):
    return load_recipe("recipes/finetune_fmnist.yaml", [
        f"data.root={root}", f"run.out_dir={tmp_path}", "run.name=run", "data.val_size=64", "data.batch_size=32",
        "data.limit_test=64", "data.augment_pad=0", "data.flip=false", "train.epochs=1", "train.lr=0.05",
        "train.threads=2", f"teacher.kwargs={json.dumps(TEACHER_KW)}", f"teacher.checkpoint={teacher_ckpt}",
        "student.ce_weight=1.0", "distill=[]", *extra,
    ])


def min_student():
    return arch_student("resnet", search_spaces.get("resnet").min_arch())


def setup_one(name, root, teacher_ckpt, tmp_path, options=None):
    """Student, two teachers, the distiller bound by the trainer's probe, and the trainer's optimiser."""
    r = recipe(tmp_path, root, teacher_ckpt)
    data = load_dataset("fashion-mnist", root, val_size=64)
    student = min_student()
    torch.manual_seed(0)
    model = student.make((1, 28, 28), 10)
    teachers = [ResNetTeacher(**TEACHER_KW).eval().requires_grad_(False) for _ in range(2)]
    d = build_distiller(Term(name, 1.0, DISTILLERS.example(name) if options is None else options, f"distill[0] ({name})"))
    probe(model, teachers, [d], student.stages, [r.teacher.stages] * 2, data)
    bundle = Students([model], [[d]])
    return model, teachers, d, bundle, build_optimizer(bundle, r.train), data


def view_of(model, teachers, d, data, peers=(), epoch=1):
    from nas_kd.features import capture

    x, y = data.train.x[:16], data.train.y[:16]
    t_logits, t_feats = [], []
    for k, t in enumerate(teachers):
        with capture(t, d.teacher_modules(k)) as f:
            t_logits.append(t(x))
        t_feats.append(dict(f))
    with capture(model, d.student_modules()) as f:
        logits = model(x)
    return View(y, logits, dict(f), t_logits, t_feats, [p(x).detach() for p in peers], epoch, x, model)


@pytest.mark.parametrize("name", DISTILLERS.available())
def test_contract_finite_teacher_free_params_trained_and_never_exported(name, synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, bundle, opt, data = setup_one(name, synthetic_root, teacher_ckpt, tmp_path)
    peers = [arch_student("resnet", model.arch).make((1, 28, 28), 10)] if d.num_students > 1 else []
    terms = d(view_of(model, teachers, d, data, peers))
    loss = sum(terms.values())
    assert terms and all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
    extra = list(d.parameters())
    before = [p.detach().clone() for p in extra]
    opt.zero_grad()
    loss.backward()
    assert all(p.grad is None for t in teachers for p in t.parameters())
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in extra)  # connectors / heads reach the optimiser
    opt.step()
    if d.uses_validation_batches:  # what it learns on validation batches (dfa's architecture weights) learns there
        d.validation_step(view_of(model, teachers, d, data, peers))
    assert all(not torch.equal(b, p) for b, p in zip(before, extra))  # and learn
    if name in ("hint", "byot"):
        assert extra  # these methods own parameters
    exported = set(model.state_dict())
    assert not any(k.startswith("distillers") for k in exported)
    assert set(bundle.state_dict()) == {f"students.0.{k}" for k in exported} | {
        f"distillers.0.0.{k}" for k in d.state_dict()}


def test_multi_teacher_with_identical_teachers_equals_kd(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, _, _, _, data = setup_one("kd", synthetic_root, teacher_ckpt, tmp_path)
    teachers[1].load_state_dict(teachers[0].state_dict())
    kd = build_distiller(Term("kd", 1.0, {"temperature": 3.0}, "kd"))
    view = view_of(model, teachers, kd, data)
    for opts in ({"temperature": 3.0}, {"temperature": 3.0, "confidence": True}, {"temperature": 3.0, "weights": [1, 3]}):
        mt = build_distiller(Term("multi_teacher", 1.0, opts, "mt"))
        assert torch.allclose(mt(view)["multi_teacher"], kd(view)["kd"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec, match", [
    ([{"name": "kd", "pairs": [["stage1", "stage1"]]}], "kd' has no option 'pairs'"),
    ([{"name": "kdd"}], "Did you mean 'kd'"),
    ([{"name": "kd", "weight": float("nan")}], "weight: must be a finite number"),
    ([{"name": "kd", "temperature": -1}], "temperature: must be > 0"),
    ([{"name": "at", "whcih": "all"}], "did you mean 'which'"),
])
def test_bad_terms_are_refused_at_load(spec, match):
    with pytest.raises(OptionError, match=match):
        parse_terms(spec)


@pytest.mark.parametrize("term, match", [
    ("{name: hint, pairs: [[head, stage4]]}", "outputs logits"),
    ("{name: hint, pairs: [[stage9, stage4]]}", "the student has no module 'stage9'"),
    ("{name: at, pairs: [[stage3, stage4]]}", "cannot be matched"),
    ("{name: kd, teacher: 1}", "teacher=1 but the recipe gives 1 teacher"),
    ("{name: hint, teacher: 1}", "teacher=1 but the recipe gives 1 teacher"),
    ("{name: fsp, teacher: 2}", "teacher=2 but the recipe gives 1 teacher"),
    ("{name: adversarial, teacher: 1}", "teacher=1 but the recipe gives 1 teacher"),  # checked by the base class
])
def test_bad_pairs_fail_before_the_run_directory_exists(term, match, synthetic_root, teacher_ckpt, tmp_path):
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, f"distill=[{term}]")
    with pytest.raises(OptionError, match=match):
        distill(r, min_student(), show_progress=False)
    assert not (tmp_path / "run").exists()


def test_torchscript_teacher_refused_for_features_allowed_for_logits(synthetic_root, teacher_ckpt, tmp_path):
    ts = tmp_path / "t.ts"
    torch.jit.trace(ResNetTeacher(**TEACHER_KW).eval(), torch.zeros(1, 1, 28, 28)).save(str(ts))
    student = min_student()
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, f"teacher.torchscript={ts}", "distill=[{name: at}]")
    with pytest.raises(OptionError, match="TorchScript"):
        distill(r, student, show_progress=False)
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, f"teacher.torchscript={ts}", "distill=[{name: kd}]",
               "data.limit_train=64")
    assert distill(r, student, show_progress=False)["test_acc"] >= 0


def test_dml_trains_every_student_on_its_peers_soft_labels(synthetic_root, teacher_ckpt, tmp_path, monkeypatch):
    from nas_kd.distill.online import DML

    seen = []
    original = DML.forward

    def spy(self, view):
        seen.append([p.clone() for p in view.peer_logits])
        return original(self, view)

    monkeypatch.setattr(DML, "forward", spy)
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, "distill=[{name: dml, students: 2}]", "data.limit_train=64")
    final = distill(r, min_student(),
                           show_progress=False)
    assert len(seen) == 2 * 2 and all(len(p) == 1 for p in seen)  # 2 steps x 2 students, one peer each
    assert not torch.equal(seen[0][0], seen[1][0])  # student 0 saw student 1's logits and vice versa
    a, b = (load_subnet(tmp_path / "run" / d) for d in ("student", "student1"))
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert len(final["students_test_acc"]) == 2 and final["best_student"] in (0, 1)


@pytest.mark.parametrize("term", ["{name: byot}", "{name: sad, start_epoch: 1}", "{name: hint}"])
def test_heads_and_connectors_train_but_are_not_exported(term, synthetic_root, teacher_ckpt, tmp_path):
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, f"distill=[{term}]", "data.limit_train=64")
    final = distill(r, min_student(),
                           show_progress=False)
    ckpt = torch.load(tmp_path / "run/checkpoints/last.pt", weights_only=True)["model"]
    exported = load_subnet(tmp_path / "run/student").state_dict()
    extra = [k for k in ckpt if k.startswith("distillers.")]
    assert extra if "sad" not in term else not extra
    assert {f"students.0.{k}" for k in exported} == set(ckpt) - set(extra)
    assert final["flops"] == json.loads((tmp_path / "run/student/arch.json").read_text())["flops"]


def test_cached_teacher_logits_give_the_live_loss(synthetic_root, teacher_ckpt, tmp_path):
    args = ("distill=[{name: kd, weight: 0.7}]", "student.ce_weight=0.3", "data.limit_train=96")
    cached = distill(recipe(tmp_path / "a", synthetic_root, teacher_ckpt, *args), min_student(), show_progress=False)
    live = distill(recipe(tmp_path / "b", synthetic_root, teacher_ckpt, *args, "train.cache_teacher=false"),
                          min_student(), show_progress=False)
    ma, mb = (json.loads((tmp_path / d / "run/metrics.jsonl").read_text().splitlines()[0]) for d in "ab")
    assert ma["train_kd"] == pytest.approx(mb["train_kd"], rel=1e-5)
    assert cached["test_loss"] == pytest.approx(live["test_loss"], rel=1e-4)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("terms", ["[{name: kd, weight: 0.5}, {name: hint, weight: 1.0}]",
                                   "[{name: kd, weight: 0.5}, {name: dfa, weight: 1.0}]"])  # dfa: validation batches too
def test_distill_resume_reproduces_uninterrupted_run(terms, synthetic_root, teacher_ckpt, tmp_path):
    args = (f"distill={terms}", "student.ce_weight=0.5",
            "data.limit_train=128", "train.epochs=2", "train.checkpoint_every_steps=2", "data.augment_pad=2")
    straight = distill(recipe(tmp_path / "a", synthetic_root, teacher_ckpt, *args), min_student(), show_progress=False)

    def stop(loop):
        if loop.state.epoch == 1 and loop.state.step == 3:
            raise Interrupt

    r = recipe(tmp_path / "b", synthetic_root, teacher_ckpt, *args)
    with pytest.raises(Interrupt):
        distill(r, min_student(), on_step=stop, show_progress=False)
    resumed = distill(r, min_student(), resume=True, show_progress=False)
    assert resumed["test_loss"] == straight["test_loss"]
    wa, wb = (torch.load(tmp_path / d / "run/checkpoints/last.pt", weights_only=True)["model"] for d in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_distill_command_with_every_student_kind(synthetic_root, teacher_ckpt, tmp_path):
    base = ["--recipe", "recipes/finetune_fmnist.yaml", "--set", f"data.root={synthetic_root}", "--set",
            "data.val_size=64", "--set", "data.limit_train=64", "--set", "train.epochs=1", "--set",
            f"teacher.kwargs={json.dumps(TEACHER_KW)}", "--set", f"teacher.checkpoint={teacher_ckpt}",
            "--set", f"run.out_dir={tmp_path}"]
    assert main(["distill", *base, "--student", "resnet:min", "--set", "run.name=a"]) == 0
    assert main(["distill", *base, "--student", str(tmp_path / "a/student"), "--set", "run.name=b"]) == 0
    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps({"space": "resnet", "arch": load_subnet(tmp_path / "a/student").arch}))
    assert main(["distill", *base, "--student", str(arch), "--set", "run.name=c"]) == 0
    assert main(["distill", *base, "--student", "nas_kd.models.resnet_teacher:resnet_fmnist", "--set", "run.name=d",
                 "--set", "distill=[{name: kd}, {name: at, pairs: [[stage2, stage2]]}]"]) == 0
    finals = [json.loads((tmp_path / n / "final.json").read_text()) for n in "abcd"]
    assert finals[0]["arch"] == finals[1]["arch"] == finals[2]["arch"] and finals[3]["model"].endswith(":resnet_fmnist")
    assert finals[1]["initialised_from"] == str(tmp_path / "a/student")
    assert main(["distill", *base, "--student", "nospace:max", "--set", "run.name=e"]) == 2
    assert main(["distill", *base, "--student", "resnet:min", "--set", "run.name=f",
                 "--set", "distill=[{name: hint, which: first}]"]) == 2


def test_distill_table_runs_rows_resumably_and_summarises(synthetic_root, teacher_ckpt, tmp_path):
    from nas_kd.bench.distill import bench_distill

    base = tmp_path / "base.yaml"
    base.write_text(open("recipes/distill_fmnist.yaml").read())
    sets = [f"data.root={synthetic_root}", "data.val_size=64", "data.limit_train=64", "train.epochs=1",
            f"teacher.kwargs={json.dumps(TEACHER_KW)}", f"teacher.checkpoint={teacher_ckpt}"]
    table = tmp_path / "table.yaml"
    rows = {"scratch": sets, "kd": [*sets, "distill=[{name: kd, weight: 0.9}]"],
            "born_again": [*sets, "distill=[{name: kd, weight: 0.9}]", "teacher.subnet={runs}/scratch-s{seed}/student"]}
    table.write_text(json.dumps({"recipe": str(base), "seeds": [0, 1], "runs": str(tmp_path / "runs"),
                                 "out": str(tmp_path / "out"), "rows": {"born_again": rows["born_again"], "kd": rows["kd"]}}))
    with pytest.raises(Exception, match="scratch"):  # born_again's teacher comes from a row that does not exist
        bench_distill(str(table), show_progress=False)
    table.write_text(json.dumps({"recipe": str(base), "seeds": [0, 1], "runs": str(tmp_path / "runs"),
                                 "out": str(tmp_path / "out"), "rows": {"born_again": rows["born_again"], **rows}}))
    summary = bench_distill(str(table), show_progress=False)
    assert set(summary["rows"]) == {"scratch", "kd", "born_again"}
    assert all(len(r["seeds"]) == 2 and r["acc_std"] is not None for r in summary["rows"].values())
    ba = json.loads((tmp_path / "out/born_again-s1.json").read_text())
    assert ba["teachers"] == [str(tmp_path / "runs/scratch-s1/student")] and ba["command"] and ba["git_commit"]
    md = (tmp_path / "out.md").read_text()
    assert "| `born_again` |" in md and "(p " in md and "Welch" in md and "*" not in md.replace("**", "")
    assert f"made by `{summary['command']}`" in md  # the source line names the record's own command
    stamp = (tmp_path / "out/kd-s0.json").stat().st_mtime
    bench_distill(str(table), show_progress=False)  # everything recorded: nothing retrained
    assert (tmp_path / "out/kd-s0.json").stat().st_mtime == stamp


def test_supernet_ablation_table_mixes_supernet_and_standalone_rows(synthetic_root, teacher_ckpt, tmp_path, capsys):
    from nas_kd.cli import main

    sets = [f"data.root={synthetic_root}", "data.val_size=32", "data.limit_train=64", "data.limit_test=64",
            "train.epochs=1", f"teacher.kwargs={json.dumps(TEACHER_KW)}", f"teacher.checkpoint={teacher_ckpt}",
            "supernet.bn_batches=1", "supernet.eval_random_archs=0", "supernet.keep_epoch_checkpoints=false"]
    table = tmp_path / "table.yaml"
    table.write_text(json.dumps({
        "recipe": "recipes/supernet_fmnist.yaml", "seeds": [0], "runs": str(tmp_path / "runs"), "out": str(tmp_path / "out"),
        "set": sets[:7],  # what every row starts from
        "rows": {"alone": {"trainer": "distill", "recipe": "recipes/arch_fmnist.yaml", "set": ["student.arch=min"]},
                 "teacher": sets[7:], "spos": [*sets[7:], "supernet.mode=spos"]}}))
    assert main(["bench", "supernet-ablation", "--table", str(table)]) == 0
    alone, sandwich, spos = (json.loads((tmp_path / f"out/{r}-s0.json").read_text()) for r in ("alone", "teacher", "spos"))
    assert alone["max_acc"] is None and 0 <= alone["min_acc"] <= 1 and alone["trainer"] == "distill"
    assert all(0 <= sandwich[f"{s}_acc"] <= 1 for s in ("max", "min", "median")) and sandwich["command"]
    assert (sandwich["mode"], spos["mode"]) == ("sandwich", "spos")
    md = (tmp_path / "out.md").read_text()
    assert "| teacher |" in md and "with `" + "` `".join(sets[:7]) + "`, then its own overrides" in md  # the schedule
    assert "- spos: `" + "` `".join([*sets[7:], "supernet.mode=spos"]) + "`\n" in md  # and each row's own
    table.write_text(json.dumps({"recipe": "recipes/supernet_fmnist.yaml", "seeds": [0], "runs": "r", "out": "o",
                                 "rows": {"bad": {"trainer": "sandwich", "set": []}}}))
    assert main(["bench", "supernet-ablation", "--table", str(table)]) == 2
    assert "trainer 'sandwich' is not one of distill, supernet" in capsys.readouterr().err


def test_tf_kd_distils_from_a_virtual_teacher_that_smooths_the_label():
    d = build_distiller(Term("tf_kd", 1.0, {"correct": 0.7, "temperature": 1.0}, "distill[0] (tf_kd)"))
    y = torch.tensor([2, 0])
    virtual = torch.full((2, 4), 0.1)
    virtual[0, 2], virtual[1, 0] = 0.7, 0.7
    at_virtual = View(y, virtual.log().requires_grad_(), {})
    assert d(at_virtual)["tf_kd"].abs().item() < 1e-6  # a student that predicts the virtual teacher: zero
    logits = torch.zeros(2, 4, requires_grad=True)
    expected = (virtual * (virtual.log() - torch.log(torch.tensor(0.25)))).sum(1).mean()
    assert d(View(y, logits, {}))["tf_kd"].item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(OptionError, match="must be > 0 and < 1"):
        parse_terms([{"name": "tf_kd", "correct": 1.0}])


def test_cs_kd_pairs_each_sample_with_another_of_its_class_and_teaches_through_it_detached():
    from nas_kd.distill.cs_kd import same_class_partners

    y = torch.tensor([3, 1, 3, 3, 0, 1])
    partner = same_class_partners(y)
    assert all(y[partner[i]] == y[i] for i in range(6)) and partner[4] == 4  # 0 is alone in the batch
    assert all(partner[i] != i for i in (0, 1, 2, 3, 5)) and sorted(partner[[0, 2, 3]].tolist()) == [0, 2, 3]
    d = build_distiller(Term("cs_kd", 1.0, {"temperature": 4.0}, "distill[0] (cs_kd)"))
    same = torch.randn(1, 5).repeat(6, 1).requires_grad_()
    assert d(View(y, same, {}))["cs_kd"].item() < 1e-6  # equal predictions within each class: zero
    logits = torch.randn(6, 5, requires_grad=True)
    d(View(torch.tensor([1, 1]), logits[:2], {}))["cs_kd"].backward()
    assert logits.grad[:2].abs().sum() > 0  # the student side learns; the partner's side is the detached target
    only = torch.randn(2, 5, requires_grad=True)
    d(View(torch.tensor([0, 1]), only, {}))["cs_kd"].backward()
    assert only.grad is not None and only.grad.abs().sum() == 0  # nobody has a partner: nothing to learn


def test_reviewkd_fuses_every_deeper_student_stage_into_each_matched_map():
    from nas_kd.distill.reviewkd import hcl

    t = torch.randn(2, 3, 8, 8)
    assert hcl(t.clone(), t).item() == 0  # and pooled levels weigh 1/2, 1/4, 1/8: a constant offset of 1 costs 1
    assert hcl(t + 1, t).item() == pytest.approx(1.0)
    d = build_distiller(Term("reviewkd", 1.0, {"mid": 4, "pairs": [["a", "A"], ["b", "B"]]}, "distill[0] (reviewkd)"))
    d.resolve(None, [[]], 1)
    d.build([((2, 3, 8, 8), (2, 5, 8, 8)), ((2, 6, 4, 4), (2, 7, 4, 4))])
    feats = {"a": torch.randn(2, 3, 8, 8, requires_grad=True), "b": torch.randn(2, 6, 4, 4, requires_grad=True)}
    view = View(torch.zeros(2, dtype=torch.long), torch.zeros(2, 10), feats, [torch.zeros(2, 10)],
                [{"A": torch.randn(2, 5, 8, 8), "B": torch.randn(2, 7, 4, 4)}])
    d(view)["reviewkd"].backward()
    assert feats["b"].grad.abs().sum() > 0 and feats["a"].grad.abs().sum() > 0
    # the shallow stage's matched map reads the deep stage: its loss alone sends gradient to the deeper features
    feats["b"].grad = None
    out, residual = d.fusions[1](feats["b"], None)
    shallow, _ = d.fusions[0](feats["a"], residual)
    hcl(shallow, view.teacher_feats[0]["A"]).backward()
    assert feats["b"].grad.abs().sum() > 0


def test_crd_contrasts_against_a_memory_of_past_batches_kept_in_its_state():
    d = build_distiller(Term("crd", 1.0, {"dim": 8, "negatives": 5, "temperature": 0.1}, "distill[0] (crd)"))
    d.resolve(["s"], [["t"]], 1)
    d.build([((4, 6, 2, 2), (4, 3, 2, 2))])
    x_s, x_t = torch.randn(4, 6, 2, 2), torch.randn(4, 3, 2, 2)
    view = View(torch.zeros(4, dtype=torch.long), torch.zeros(4, 10), {"s": x_s}, [torch.zeros(4, 10)], [{"t": x_t}])
    before = d.memory_t.clone()
    loss = d(view)["crd"]
    assert torch.isfinite(loss) and loss > 0
    es = torch.nn.functional.normalize(d.embed_s(x_s.mean((2, 3))), dim=1)
    assert torch.allclose(d.memory_s[:4], es.detach()) and torch.equal(d.memory_t[4], before[4])
    d(view)  # the next batch wraps around the 5-row memory: rows 4, 0, 1, 2
    assert d.position.item() == 3 and torch.allclose(d.memory_s[4], es[0].detach())
    assert {"memory_s", "memory_t", "position"} <= set(d.state_dict())
    with torch.no_grad():  # not a training step: the memory does not move
        d(view)
    assert d.position.item() == 3


def test_ft_paraphraser_learns_only_by_reconstruction_and_the_translator_only_by_the_factors():
    d = build_distiller(Term("ft", 1.0, {"rate": 0.5}, "distill[0] (ft)"))
    d.resolve(["s"], [["t"]], 1)
    d.build([((2, 3, 4, 4), (2, 6, 4, 4))])
    feats = {"s": torch.randn(2, 3, 4, 4, requires_grad=True)}
    view = View(torch.zeros(2, dtype=torch.long), torch.zeros(2, 10), feats, [torch.zeros(2, 10)],
                [{"t": torch.randn(2, 6, 4, 4)}])
    terms = d(view)
    assert d.encoder[-1][0].out_channels == 3  # factors: half the teacher's channels
    terms["ft"].backward(retain_graph=True)
    assert all(p.grad is None for p in [*d.encoder.parameters(), *d.decoder.parameters()])
    assert feats["s"].grad.abs().sum() > 0 and all(p.grad is not None for p in d.translator.parameters())
    d.zero_grad()
    feats["s"].grad = None
    terms["ft_paraphraser"].backward()
    assert feats["s"].grad is None and all(p.grad is None or p.grad.abs().sum() == 0 for p in d.translator.parameters())
    assert all(p.grad is not None for p in [*d.encoder.parameters(), *d.decoder.parameters()])
    same = torch.randn(2, 3, 4, 4)
    assert d.factor_loss(same, 5 * same).item() < 1e-6  # factors are compared after normalisation


def test_multi_hint_is_the_mean_of_one_connected_hint_per_teacher(synthetic_root, teacher_ckpt, tmp_path):
    model, teachers, d, _, _, data = setup_one("multi_hint", synthetic_root, teacher_ckpt, tmp_path)
    assert [p.teacher for p in d.parts] == [0, 1] and d.student_modules() == d.parts[0].student_modules()
    view = view_of(model, teachers, d, data)
    each = [part(view)["hint"] for part in d.parts]
    assert d(view)["multi_hint"].item() == pytest.approx(sum(e.item() for e in each) / 2)
    with pytest.raises(OptionError, match="two or more distinct teachers"):
        setup_one("multi_hint", synthetic_root, teacher_ckpt, tmp_path, {"teachers": [1, 1]})


def test_info_flow_weighs_the_shallow_pairs_heavily_early_and_fades_them():
    d = build_distiller(Term("info_flow", 1.0, {"init_weight": 100, "decay": 0.5, "pairs": [["a", "A"], ["b", "B"],
                                                                                            ["c", "C"]]},
                             "distill[0] (info_flow)"))
    d.resolve(None, [[]], 1)
    assert d.weights(0) == [100, 100, 1] and d.weights(3) == [12.5, 12.5, 1]  # the deepest pair (last) stays at 1
    f = {k: torch.randn(6, 4, 3, 3) for k in "abc"}
    t = {k.upper(): v.clone() for k, v in f.items()}
    view = View(torch.zeros(6, dtype=torch.long), torch.zeros(6, 10), f, [torch.zeros(6, 10)], [t], epoch=2)
    assert d(view)["info_flow"].item() < 1e-5  # the same flow: nothing to transfer
    t["A"] = torch.randn(6, 4, 3, 3)
    early, late = (d(View(view.y, view.logits, f, view.teacher_logits, [t], epoch=e))["info_flow"].item() for e in (0, 4))
    assert early == pytest.approx(16 * late, rel=1e-4)  # only the shallow pair differs: its weight halves per epoch


def test_frskd_fuses_by_learned_non_negative_normalised_weights_or_by_sums():
    d = build_distiller(Term("frskd", 1.0, {}, "distill[0] (frskd)"))
    assert d.fusion == "learned"  # the paper's
    a, b = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.allclose(d.fuse([a, b], torch.tensor([1.0, 3.0])), (a + 3 * b) / (4 + 1e-4))
    assert torch.allclose(d.fuse([a, b], torch.tensor([-1.0, 2.0])), 2 * b / (2 + 1e-4))  # a negative weight is 0
    assert torch.equal(d.fuse([a, b], None), a + b)  # fusion: sum


def test_irg_transformation_is_how_far_each_instance_moves_between_layers():
    from nas_kd.distill.irg import instance_moves

    a = torch.randn(4, 6)
    b = a.clone()
    b[2] += 3.0  # only instance 2 moves
    moves = instance_moves(a, b)
    assert moves[2] == pytest.approx(4.0) and moves[[0, 1, 3]].abs().max() < 1e-6  # divided by the mean (0.75)
    wide = torch.repeat_interleave(a, 2, dim=1)  # 12 channels that average-pool back to a's 6
    assert instance_moves(wide, b).tolist() == pytest.approx(moves.tolist(), abs=1e-6)
    d = build_distiller(Term("irg", 1.0, {}, "distill[0] (irg)"))
    assert d.transform == "distance"  # the paper's


def test_a_table_row_can_prune_the_teacher_and_fine_tune_it_on_the_tables_schedule(synthetic_root, teacher_ckpt, tmp_path,
                                                                                    monkeypatch):
    from nas_kd.bench.distill import bench_distill
    from nas_kd.errors import UserError

    sets = [f"data.root={synthetic_root}", "data.val_size=32", "data.limit_train=64", "data.limit_test=64",
            "data.batch_size=32", f"teacher.checkpoint={teacher_ckpt}", f"teacher.kwargs={json.dumps(TEACHER_KW)}",
            "train.epochs=1", "student.ce_weight=0.1", "distill=[{name: kd, weight: 0.9}]"]
    table = {"recipe": "recipes/distill_fmnist.yaml", "seeds": [0, 1], "runs": str(tmp_path / "runs"),
             "out": str(tmp_path / "out"), "set": sets, "references": ["l1"],
             "rows": {"l1": {"trainer": "prune", "pruner": "l1", "budget_fraction": 0.3}}}
    path = tmp_path / "t.yaml"
    path.write_text(json.dumps({**table, "rows": {"l1": {"trainer": "prune", "pruner": {"name": "l1", "x": 1},
                                                         "budget_fraction": 0.3}}}))
    with pytest.raises(UserError, match="x"):
        bench_distill(str(path), show_progress=False)
    for bad, match in (({"budget_fraction": 1.5}, "budget_fraction 1.5 is not a fraction"),
                       ({"budget_mflops": 0}, "budget_mflops 0 is not a positive"),
                       ({"budget_mflops": 1, "budget_fraction": 0.3}, "one of budget_fraction or budget_mflops")):
        path.write_text(json.dumps({**table, "rows": {"l1": {"trainer": "prune", "pruner": "l1", **bad}}}))
        with pytest.raises(UserError, match=match):
            bench_distill(str(path), show_progress=False)
    table["rows"]["l1_mflops"] = {"trainer": "prune", "pruner": "l1", "budget_mflops": 0.5}
    for key, bad in (("references", {"l1": ["l1_mflop"]}), ("references", ["l1", "l2"]),
                     ("references", {"l1": "l1_mflops"}), ("latency", ["tensorrt"])):
        path.write_text(json.dumps({**table, key: bad}))
        with pytest.raises(UserError, match=key):
            bench_distill(str(path), show_progress=False)
    assert not (tmp_path / "runs").exists()  # refused before any row trained
    path.write_text(json.dumps(table))
    summary = bench_distill(str(path), show_progress=False)
    record = json.loads((tmp_path / "out" / "l1-s0.json").read_text())
    assert record["trainer"] == "prune" and record["mflops"] <= 0.3 * 2.05 and record["epochs"] == 1
    assert json.loads((tmp_path / "out" / "l1_mflops-s0.json").read_text())["mflops"] <= 0.5
    assert summary["references"] == ["l1"] and len(summary["rows"]["l1"]["seeds"]) == 2
    assert "vs l1" in (tmp_path / "out.md").read_text()
    table["references"] = {"l1": ["l1_mflops"], "l1_mflops": []}  # a family per reference: l1_mflops vs l1 only
    path.write_text(json.dumps(table))
    with pytest.raises(UserError, match="--time: .* names no runtimes"):
        bench_distill(str(path), show_progress=False, time_only=True)
    table["latency"] = ["torch", "onnxruntime"]  # every row's network timed, once every row has one
    monkeypatch.setattr("nas_kd.latency.MIN_SECONDS", 0.0)
    path.write_text(json.dumps(table))
    summary = bench_distill(str(path), show_progress=False, time_only=True)  # nothing left to train: timed now
    text = (tmp_path / "out.md").read_text()
    assert "vs l1 / vs l1_mflops" in text and "families of 1 and 0" in text and "`l1` against `l1_mflops`" in text
    timed = json.loads((tmp_path / "out" / "latency.json").read_text())
    assert set(timed["latency_ms"]) == {"l1", "l1_mflops"} and timed["command"] and timed["git_commit"]
    for row in ("l1", "l1_mflops"):
        ms = summary["rows"][row]["latency_ms"]
        assert set(ms) == {"torch", "onnxruntime"} and all(0 < v["b1"] < v["b32"] for v in ms.values())
    assert "ms b1 / b32 (onnxruntime)" in text
    text = (tmp_path / "out.md").read_text()  # each family's comparison, with latency over its reference's
    assert "Against `l1`" in text and "latency / l1's, onnxruntime b32" in text and "of the 1 rows" in text


def test_cached_teacher_features_give_the_live_loss_to_float16_precision(synthetic_root, teacher_ckpt, tmp_path):
    args = ("distill=[{name: kd, weight: 0.7}, {name: hint, weight: 1.0}]", "student.ce_weight=0.3",
            "data.limit_train=96")
    runs = {"cached": (), "live": ("train.cache_teacher=false",), "too_big": ("train.cache_teacher_features_mb=0",)}
    for name, extra in runs.items():
        distill(recipe(tmp_path / name, synthetic_root, teacher_ckpt, *args, *extra), min_student(), show_progress=False)
    first = {n: json.loads((tmp_path / n / "run/metrics.jsonl").read_text().splitlines()[0]) for n in runs}
    assert first["cached"]["train_hint"] == pytest.approx(first["live"]["train_hint"], rel=1e-3)
    assert first["cached"]["train_kd"] == pytest.approx(first["live"]["train_kd"], rel=1e-3)
    assert first["too_big"]["train_hint"] == first["live"]["train_hint"]  # over the limit: computed every step


def test_byot_reports_its_exits_anytime(synthetic_root, teacher_ckpt, tmp_path):
    r = recipe(tmp_path, synthetic_root, teacher_ckpt, "distill=[{name: byot}]", "data.limit_train=64")
    final = distill(r, min_student(), show_progress=False)
    report = final["method_reports"]["byot"]
    exits = report["exits"]
    assert len(exits) == 4 and exits[-1]["after"] == "output"
    assert exits[-1]["acc"] == pytest.approx(final["test_acc"])  # the last exit is the student itself
    assert exits[-1]["mflops"] == pytest.approx(final["mflops"])
    assert all(0 < e["mflops"] for e in exits)  # a head at a wide early stage may cost about the whole net
    for e in report["early_exit"]:
        assert sum(e["share_per_exit"]) == pytest.approx(1.0)
        assert min(x["mflops"] for x in exits) <= e["mean_mflops"] <= max(x["mflops"] for x in exits) + 1e-9
    assert report["images"] == 64  # the synthetic test split


def test_prefix_flops_count_the_layers_run_before_each_module():
    from nas_kd.flops import count_flops, prefix_flops

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 24 * 24, 10))
    first, second, last = prefix_flops(net, (1, 1, 28, 28), ["0", "1", "3"])
    assert first == 4 * 9 * 26 * 26 and second == first + 8 * 4 * 9 * 24 * 24
    assert last == count_flops(net, (1, 1, 28, 28))

