import json

import torch

import search_spaces
from nas_kd.cli import main
from nas_kd.export import load_subnet
from nas_kd.checkpoint import save_supernet
from nas_kd.supernet import Supernet


def test_export_command(tmp_path, fmnist_root, capsys):
    net = Supernet(search_spaces.get("resnet"))
    save_supernet(net, tmp_path / "super.pt")
    space = search_spaces.get("resnet")
    (tmp_path / "a.json").write_text(json.dumps({"arch": space.min_arch()}))
    rc = main(["export", "--checkpoint", str(tmp_path / "super.pt"), "--arch", str(tmp_path / "a.json"),
               "--out", str(tmp_path / "out"), "--torchscript", "--recalibrate-batches", "2",
               "--recipe", "recipes/teacher_fmnist.yaml", "--set", f"data.root={fmnist_root}",
               "--set", "data.limit_train=500"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["mflops"] == space.flops(space.min_arch()) / 1e6
    sub = load_subnet(tmp_path / "out")
    assert sub(torch.zeros(1, 1, 28, 28)).shape == (1, 10) and (tmp_path / "out" / "model.ts").exists()
    # recalibration changed the BatchNorm statistics away from their initial values
    assert not torch.allclose(sub.stem[1].running_mean, torch.zeros_like(sub.stem[1].running_mean))


def test_export_rejects_arch_outside_space(tmp_path, capsys):
    save_supernet(Supernet(search_spaces.get("mbv2")), tmp_path / "super.pt")
    (tmp_path / "a.json").write_text(json.dumps({**search_spaces.get("mbv2").max_arch(), "stage1.width": 17}))
    rc = main(["export", "--checkpoint", str(tmp_path / "super.pt"), "--arch", str(tmp_path / "a.json"), "--out", str(tmp_path / "o")])
    assert rc == 2
    assert "stage1.width=17 is not allowed; allowed values: [16, 24]" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_search_then_export_with_finetune_on_real_slice(tmp_path, fmnist_root):
    common = [f"data.root={fmnist_root}", "data.limit_train=512", "data.val_size=128", "data.limit_test=200",
              f"run.out_dir={tmp_path}", "run.name=search", "search.probe_size=64", "search.bn_batches=2",
              "search.strategy={name: evolution, population: 2}", "search.extra_evaluators=[cka, flops]"]
    args = ["search", "--recipe", "recipes/search_fmnist.yaml", "--trials", "3", "--strategy", "evolution",
            "--budget-mflops", "20"]
    for c in common:
        args += ["--set", c]
    assert main(args) == 0
    run = tmp_path / "search"
    rows = [json.loads(x) for x in (run / "candidates.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(r["mflops"] <= 20 for r in rows)
    assert {"kl", "kl_raw", "cka", "flops"} <= set(rows[0])
    assert (run / "pareto.png").stat().st_size > 1000
    best = json.loads((run / "best_arch.json").read_text())
    assert best["arch"] == rows[0]["arch"]
    assert main(["search", "--recipe", "recipes/search_fmnist.yaml", "--budget-mflops", "1"]) == 2
    out = tmp_path / "student"
    assert main(["export", "--run", str(run), "--out", str(out), "--recalibrate-batches", "2",
                 "--finetune-epochs", "1", "--set", "student.ce_weight=0.5", "--set", "distill=[{name: kd, weight: 0.5}]", "--set", "data.batch_size=128"]) == 0
    final = json.loads((out / "finetune/final.json").read_text())
    assert final["arch"] == best["arch"] and final["distill"] == [{"name": "kd", "weight": 0.5}] and final["test_acc"] > 0.5
    assert (out / "weights.pt").exists()


def test_export_to_onnx_matches_pytorch(tmp_path, capsys):
    import numpy as np
    import onnxruntime as ort

    space = search_spaces.get("mbv2")
    save_supernet(Supernet(space), tmp_path / "super.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "super.pt"), "--arch", "min", "--out", str(tmp_path / "o"),
                 "--onnx"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["onnx_max_abs_diff"] <= 1e-4 and printed["onnx_latency_ms_batch1_cpu"] > 0
    sub = load_subnet(tmp_path / "o")  # still loads without the supernet
    session = ort.InferenceSession(str(tmp_path / "o" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, 28, 28)
    got = session.run(None, {"images": x.numpy()})[0]
    assert np.abs(got - sub(x).detach().numpy()).max() <= 1e-4
