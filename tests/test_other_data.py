"""Data other than Fashion-MNIST: 3-channel 32x32 npz arrays, a torchvision-style teacher factory (called
without in_channels, stages named layer1..layer4, weights only from a local file) and DNA blockwise training."""
import json
import sys
import textwrap

import numpy as np
import pytest
import torch

from nas_kd.checkpoint import save_checkpoint
from nas_kd.config import TeacherConfig, load_recipe
from nas_kd.errors import UserError
from nas_kd.teacher import build_model

# The shape of torchvision.models.resnet18 (keyword-only weights/progress, **kwargs to the model, 3 input
# channels, conv1 / bn1 / relu / maxpool / layer1..layer4 / avgpool / fc), small enough for a test.
FACTORY = textwrap.dedent('''
    import torch.nn as nn

    def _layer(cin, cout, stride):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())

    class TinyResNet(nn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 8, 7, 2, 3, bias=False)
            self.bn1, self.relu, self.maxpool = nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(3, 2, 1)
            self.layer1, self.layer2 = _layer(8, 8, 1), _layer(8, 16, 2)
            self.layer3, self.layer4 = _layer(16, 16, 2), _layer(16, 32, 2)
            self.avgpool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(32, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    def resnet18(*, weights=None, progress=True, **kwargs):
        assert weights is None, "a test never downloads"
        return TinyResNet(**kwargs)
''')


@pytest.fixture
def tvlike(tmp_path, monkeypatch):
    (tmp_path / "tvlike.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "tvlike:resnet18"
    sys.modules.pop("tvlike", None)


def write_npz(path, n_train=96, n_test=32, shape=(3, 32, 32), classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y_train, y_test = rng.integers(0, classes, n_train), rng.integers(0, classes, n_test)
    x_train = rng.integers(0, 256, (n_train, *shape), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, *shape), dtype=np.uint8)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return str(path)


def test_torchvision_style_factory_gets_no_in_channels_and_never_downloads(tvlike):
    model = build_model(TeacherConfig(model=tvlike), num_classes=7, in_channels=3)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 7)
    with pytest.raises(UserError, match="would download weights"):
        build_model(TeacherConfig(model=tvlike, kwargs={"weights": "IMAGENET1K_V1"}), 7, 3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'") as bug:  # raised inside the factory
        build_model(TeacherConfig(model=tvlike, kwargs={"depth": 3}), 7, 3)  # (it takes **kwargs): a traceback
    assert not isinstance(bug.value, UserError)


def test_blockwise_step_on_3x32x32_data_with_a_torchvision_style_teacher(tvlike, tmp_path):
    from nas_kd.dna.blockwise import load_blockwise
    from nas_kd.recipes import job_of
    from nas_kd.train.blockwise import train_blockwise

    data = write_npz(tmp_path / "data.npz")
    weights = tmp_path / "teacher.pt"
    save_checkpoint({"model": build_model(TeacherConfig(model=tvlike), 4, 3).state_dict()}, weights)
    recipe = load_recipe("recipes/dna_fmnist.yaml", [
        "data.dataset=npz", f"data.root={data}", "data.val_size=16", "data.batch_size=16", "data.augment_pad=0",
        f"teacher.model={tvlike}", f"teacher.checkpoint={weights}", "teacher.torchscript=null",
        "teacher.stages=[maxpool, layer1, layer2, layer3, layer4]", "train.epochs=1", "train.device=cpu",
        "train.checkpoint_every_steps=0", "supernet.bn_batches=1", f"run.out_dir={tmp_path}", "run.name=dna"])
    final = train_blockwise(job_of(recipe), recipe.supernet, 2, show_progress=False)
    assert final["teacher_widths"] == [8, 8, 16, 16, 32]
    model = load_blockwise(tmp_path / "dna/checkpoints/last.pt")
    assert model.space.input_shape == (3, 32, 32) and model.space.num_classes == 4
    assert json.loads((tmp_path / "dna/final.json").read_text())["teacher_stages"][0] == "maxpool"


def write_folder(root, classes=("cat", "dog"), per_class=5, size=(12, 10), mode="RGB", seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(root / name / f"{i}.png")
    return root


@pytest.mark.parametrize("layout", ["split", "flat"])
def test_imagefolder_loads_classes_and_shape(tmp_path, layout):
    from nas_kd.data import load_dataset

    if layout == "split":
        write_folder(tmp_path / "train", per_class=6)
        write_folder(tmp_path / "test", per_class=2, seed=1)
    else:
        write_folder(tmp_path, per_class=10)
    d = load_dataset("imagefolder", str(tmp_path), val_size=2)
    assert d.input_shape == (3, 10, 12) and d.num_classes == 2 and not d.flip
    assert len(d.train) + len(d.val) == (12 if layout == "split" else 16) and len(d.test) == 4
    assert set(d.test.y.tolist()) == {0, 1}


def test_imagefolder_greyscale_is_one_channel(tmp_path):
    from nas_kd.data import load_dataset

    write_folder(tmp_path, per_class=5, mode="L")
    assert load_dataset("imagefolder", str(tmp_path), val_size=1).input_shape == (1, 10, 12)


def test_imagefolder_errors_name_the_file(tmp_path):
    from nas_kd.data import DatasetError, load_imagefolder

    write_folder(tmp_path / "a", per_class=3)
    (tmp_path / "a" / "cat" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="broken.png: not a readable image"):
        load_imagefolder(tmp_path / "a")
    write_folder(tmp_path / "b", per_class=3)
    (tmp_path / "b" / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty: class folder holds no images"):
        load_imagefolder(tmp_path / "b")
    write_folder(tmp_path / "c", per_class=3)
    write_folder(tmp_path / "c", classes=("dog",), per_class=1, size=(8, 8), seed=3)  # overwrites dog/0.png
    with pytest.raises(DatasetError, match="dog/0.png: 8x8 pixels.*resize"):
        load_imagefolder(tmp_path / "c")
    with pytest.raises(DatasetError, match="no class folders"):
        load_imagefolder(tmp_path / "c" / "cat")


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_folder_larger_than_memory_streams_the_same_batches(tmp_path, workers):
    from nas_kd.data import BatchIterator, LazyImages, load_dataset

    write_folder(tmp_path / "train", per_class=12)
    write_folder(tmp_path / "test", per_class=3, seed=1)
    eager = load_dataset("imagefolder", str(tmp_path), val_size=4)
    lazy = load_dataset("imagefolder", str(tmp_path), val_size=4, memory_limit_mb=0, workers=workers)
    assert isinstance(lazy.train.x, LazyImages) and not isinstance(eager.train.x, LazyImages)
    assert lazy.input_shape == eager.input_shape and lazy.train.x.shape == eager.train.x.shape
    assert torch.equal(lazy.val.y, eager.val.y) and torch.allclose(lazy.test.x[:5], eager.test.x[:5], atol=1e-5)
    kw = dict(shuffle=True, seed=3, augment_pad=2, flip=True)
    batches = [list(BatchIterator(d.train, 7, pad_value=d.pad_value, **kw).epoch(1, start_step=1)) for d in (eager, lazy)]
    assert len(batches[0]) == len(batches[1]) == 2
    for (xe, ye), (xl, yl) in zip(*batches):
        assert torch.equal(ye, yl) and torch.allclose(xe, xl, atol=1e-5)


def test_a_streamed_image_that_is_broken_is_named_when_read(tmp_path):
    from nas_kd.data import DatasetError, load_dataset

    write_folder(tmp_path, per_class=6)
    data = load_dataset("imagefolder", str(tmp_path), val_size=2, memory_limit_mb=0, workers=0)
    victim = data.test.x.files[0]
    victim.write_bytes(b"broken")
    with pytest.raises(DatasetError, match=f"{victim.name}: not a readable image"):
        data.test.x[:3]
