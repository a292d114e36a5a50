"""int8: BatchNorm folding keeps the function, fake quantisation trains through KD, the onnxruntime int8 graph
follows the fake-quantised model, and nas-kd quantize writes the table (tiny student, synthetic data)."""
import json

import pytest
import torch

import search_spaces
from nas_kd.export import export_subnet, save_subnet
from nas_kd.quantize import (
    ActivationFakeQuant,
    agreement,
    export_float,
    fold_batchnorm,
    prepare_qat,
    quantise_onnx,
    strip_qat,
    with_minmax_ranges,
)
from nas_kd.inference import installed, int8_share, load
from nas_kd.supernet import Supernet

pytest.importorskip("onnxruntime")


def student():
    torch.manual_seed(0)
    net = export_subnet(Supernet(search_spaces.get("resnet")), search_spaces.get("resnet").min_arch())
    for m in net.modules():  # BatchNorm with non-trivial statistics, so folding has something to fold
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return net.eval()


def test_folding_batchnorm_keeps_the_function_and_stripping_restores_the_float_model():
    net, x = student(), torch.randn(4, 1, 28, 28)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert torch.allclose(net(x), folded(x), atol=1e-5)
    qat = prepare_qat(net, (1, 28, 28))
    plain = strip_qat(qat, folded)
    assert torch.allclose(plain(x), folded(x), atol=1e-6)
    assert not any(isinstance(m, ActivationFakeQuant) for m in plain.modules())


def test_qat_with_kd_changes_the_weights_and_keeps_the_kd_gradient():
    from nas_kd.losses.functional import kd_loss

    net = student()
    qat = prepare_qat(net, (1, 28, 28)).train()
    teacher_logits = torch.randn(8, 10)
    conv = [m for m in qat.modules() if isinstance(m, torch.nn.Conv2d)][1]  # the stem's stays float
    before = conv.parametrizations.weight.original.detach().clone()
    loss = kd_loss(qat(torch.randn(8, 1, 28, 28)), teacher_logits, 4.0)
    loss.backward()
    grad = conv.parametrizations.weight.original.grad
    assert grad is not None and grad.abs().sum() > 0  # the straight-through estimator passes KD's gradient
    torch.optim.SGD(qat.parameters(), lr=0.1).step()
    assert not torch.equal(before, conv.parametrizations.weight.original.detach())


@pytest.mark.parametrize("engine", installed())
def test_the_int8_graph_follows_the_fake_quantised_model_and_runs_in_int8(tmp_path, engine):
    net = student()
    g = torch.Generator().manual_seed(0)
    calib = [torch.randn(16, 1, 28, 28, generator=g) for _ in range(4)]
    fp32 = export_float(fold_batchnorm(net), tmp_path / "fp32.onnx", (1, 28, 28))
    int8 = quantise_onnx(fp32, tmp_path / "int8.onnx", calib)
    compiled = load(int8, engine, 2)
    check = agreement(compiled, with_minmax_ranges(prepare_qat(net, (1, 28, 28)), calib),
                      torch.randn(64, 1, 28, 28, generator=g))
    # stated tolerance: the int8 graph picks the fake-quantised model's class for >= 90 % of random inputs, and its
    # logits are within 10 % of them on average (both quantise alike; they differ in rounding and fused ops)
    assert check["top1_agreement"] >= 0.9 and check["relative_logit_error"] < 0.1
    assert int8.stat().st_size < 0.6 * fp32.stat().st_size
    # every convolution but the image-fed stem runs as an integer kernel after the engine's own optimisation
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    assert int8_share(compiled.kernels(), engine) == (convs - 1, convs)
    assert int8_share(load(fp32, engine, 2).kernels(), engine) == (0, convs)


def test_quantize_command_writes_the_table(tmp_path, synthetic_root, capsys):
    from nas_kd.cli import main

    save_subnet(student(), tmp_path / "student")
    assert main(["quantize", "--recipe", "recipes/distill_fmnist.yaml", "--set", f"data.root={synthetic_root}",
                 "--set", "data.val_size=32", "--set", "data.limit_train=64", "--set", "data.limit_test=64",
                 "--set", "distill=[]", "--student", str(tmp_path / "student"), "--out", str(tmp_path / "q"),
                 "--seeds", "2", "--qat-epochs", "1", "--calibration-batches", "1", "--pass-seconds", "0",
                 "--results", str(tmp_path / "quantize")]) == 0
    result = json.loads((tmp_path / "quantize.json").read_text())
    rows, engines = result["rows"], installed()
    assert set(rows) == {f"{e}/{g}" for e in engines for g in ("fp32", "ptq_int8", "qat_kd_int8")}
    for key, r in rows.items():
        assert len(r["accs"]) == (2 if key.endswith("qat_kd_int8") else 1)
        assert len(r["latency_ms_b1"]) == len(r["latency_ms_b32"]) == 2  # first pass, retest
        assert {"acc_mean", "kernels", "int8_convs", "size_kb", "speedup_vs_own_fp32_b32"} <= set(r)
    assert result["shipped"]["row"].endswith("/qat_kd_int8")
    assert {"command", "git_commit", "wall_seconds"} <= set(result)
    assert "| onnxruntime | qat_kd_int8 |" in (tmp_path / "quantize.md").read_text()


def test_a_diverging_run_stops_with_one_line_and_keeps_its_checkpoint(tmp_path, synthetic_root, capsys):
    """Too high a learning rate: the step whose loss is not finite stops the run before the optimiser applies it;
    quantisation-aware training whose activations blow up says the same."""
    from nas_kd.cli import main
    from nas_kd.errors import Diverged
    from nas_kd.quantize import ActivationFakeQuant

    args = ["train-arch", "--recipe", "recipes/arch_fmnist.yaml", "--arch", "min"]
    for s in (f"data.root={synthetic_root}", f"run.out_dir={tmp_path}", "data.limit_train=256", "data.val_size=32",
              "train.epochs=3", "train.lr=1e30", "train.warmup_epochs=0", "train.checkpoint_every_steps=1"):
        args += ["--set", s]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "training diverged at epoch" in err and "lower train.lr" in err and "\n" not in err
    state = torch.load(tmp_path / "arch_fmnist" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    q = ActivationFakeQuant().train()
    with pytest.raises(Diverged, match="lower the learning rate"):
        q(torch.tensor([1.0, float("nan")]))


def test_a_wrong_student_is_refused_before_the_output_directory_is_made(tmp_path, capsys):
    from nas_kd.cli import main

    assert main(["quantize", "--recipe", "recipes/quickstart.yaml", "--student", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "q")]) == 2
    assert "no arch.json (not a saved subnet)" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()
