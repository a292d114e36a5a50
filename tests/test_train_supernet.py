import json

import pytest

from nas_kd.config import load_recipe
from nas_kd.errors import OptionError
from nas_kd.checkpoint import load_supernet
from nas_kd.recipes import train_supernet


def recipe(tmp_path, fmnist_root, *extra):
    return load_recipe("recipes/supernet_fmnist.yaml", [
        f"data.root={fmnist_root}", f"run.out_dir={tmp_path}", "run.name=run", "data.limit_train=800",
        "data.limit_test=500", "data.batch_size=64", "supernet.bn_batches=3", "supernet.eval_random_archs=1",
        "train.checkpoint_every_steps=0", "train.lr=0.05", *extra,
    ])


def test_sandwich_run_learns_on_real_slice(tmp_path, fmnist_root):
    final = train_supernet(recipe(tmp_path, fmnist_root, "train.epochs=3", "supernet.mode.soft_labels=mix"), show_progress=False)
    records = [json.loads(x) for x in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert records[-1]["train_loss_max"] < records[0]["train_loss_max"]
    assert records[-1]["train_loss_distill"] < records[0]["train_loss_distill"]
    assert final["max_acc"] > 0.3  # chance: 0.1
    net = load_supernet(tmp_path / "run/checkpoints/last.pt")
    assert net.space.name == "resnet"


def test_bad_supernet_options(tmp_path, fmnist_root):
    with pytest.raises(OptionError, match=r"supernet.mode \(sandwich\).soft_labels: 'both' is not one of inplace, "
                                          "teacher, mix, none"):
        train_supernet(recipe(tmp_path, fmnist_root, "supernet.mode.soft_labels=both"))
    with pytest.raises(OptionError, match=r"supernet.mode \(sandwich\): distill\[0\] \(alpha\).*Did you mean 'alpha_div'"):
        train_supernet(recipe(tmp_path, fmnist_root, "supernet.mode.distill=[{name: alpha}]"))
    with pytest.raises(OptionError, match="only logit methods work: alpha_div, cs_kd, dist, dkd, kd, logit_std, multi_teacher, rco, tf_kd"):
        train_supernet(recipe(tmp_path, fmnist_root, "supernet.mode.distill=[{name: hint}]"))
    assert not (tmp_path / "run").exists()
