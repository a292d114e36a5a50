import gzip
import pickle

import numpy as np
import pytest
import torch

from nas_kd.data import (
    BatchIterator,
    DatasetError,
    augment,
    load_cifar10,
    load_dataset,
    load_idx,
    read_idx,
)


def write_idx(path, array, magic=None, gz=False, cut=0):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else 0x800 + array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    data = (header + array.tobytes())[: len(header) + array.size - cut]
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def make_idx_dir(tmp_path, n_train=50, n_test=20, gz=False):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), gz=gz)
    write_idx(tmp_path / "train-labels-idx1-ubyte", rng.integers(0, 10, n_train), gz=gz)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz=gz)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test), gz=gz)
    return tmp_path


@pytest.mark.parametrize("gz", [False, True])
def test_idx_roundtrip(tmp_path, gz):
    make_idx_dir(tmp_path, gz=gz)
    (xtr, ytr), (xte, yte) = load_idx(tmp_path)
    assert xtr.shape == (50, 1, 28, 28) and xtr.dtype == torch.uint8
    assert ytr.shape == (50,) and yte.shape == (20,) and xte.shape == (20, 1, 28, 28)


def test_missing_file_names_it(tmp_path):
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte"):
        load_idx(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_idx(tmp_path / "nope")


def test_wrong_magic(tmp_path):
    p = write_idx(tmp_path / "x", np.zeros((2, 3, 3)), magic=0x0801)
    with pytest.raises(DatasetError, match=r"x: wrong IDX magic number 0x00000801"):
        read_idx(p, 3)


def test_truncated(tmp_path):
    p = write_idx(tmp_path / "x", np.zeros((4, 5, 5)), cut=7)
    with pytest.raises(DatasetError, match="truncated"):
        read_idx(p, 3)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(DatasetError, match="truncated header"):
        read_idx(short, 1)


def test_corrupt_gzip(tmp_path):
    p = tmp_path / "x.gz"
    p.write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="corrupt gzip"):
        read_idx(p, 1)


def test_count_mismatch(tmp_path):
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(49))
    with pytest.raises(DatasetError, match="50 images but .* 49 labels"):
        load_idx(tmp_path)


def test_user_directory_dataset(tmp_path):
    make_idx_dir(tmp_path, n_train=60)
    b = load_dataset("idx", str(tmp_path), val_size=10)
    assert (len(b.train), len(b.val), len(b.test)) == (50, 10, 20)
    assert not b.flip  # unknown images: no flips
    assert abs(b.train.x.mean().item()) < 1e-5 and abs(b.train.x.std().item() - 1) < 1e-3


def test_env_var_root(tmp_path, monkeypatch):
    make_idx_dir(tmp_path, n_train=60)
    monkeypatch.setenv("NAS_KD_DATA", str(tmp_path))
    assert len(load_dataset("fashion-mnist", val_size=10).test) == 20


def test_split_is_seeded(tmp_path):
    make_idx_dir(tmp_path, n_train=60)
    a = load_dataset("idx", str(tmp_path), val_size=10, split_seed=1)
    b = load_dataset("idx", str(tmp_path), val_size=10, split_seed=1)
    c = load_dataset("idx", str(tmp_path), val_size=10, split_seed=2)
    assert torch.equal(a.val.x, b.val.x)
    assert not torch.equal(a.val.x, c.val.x)


def test_bad_val_size(tmp_path):
    make_idx_dir(tmp_path)
    with pytest.raises(DatasetError, match="val_size"):
        load_dataset("idx", str(tmp_path), val_size=50)


def test_cifar_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d = {b"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), b"labels": list(rng.integers(0, 10, 4))}
        (tmp_path / name).write_bytes(pickle.dumps(d))
    (xtr, ytr), (xte, yte) = load_cifar10(tmp_path)
    assert xtr.shape == (20, 3, 32, 32) and xte.shape == (4, 3, 32, 32) and ytr.shape == (20,)


def test_cifar_refuses_arbitrary_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "data_batch_1").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(DatasetError, match="refusing to load builtins.print"):
        load_cifar10(tmp_path)


def test_augment_keeps_content_and_is_seeded():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    pad_value = torch.tensor([-1.0])
    out0 = augment(x, torch.Generator().manual_seed(0), 0, pad_value, flip=False)
    assert torch.equal(out0, x)
    a = augment(x, torch.Generator().manual_seed(3), 2, pad_value, flip=True)
    b = augment(x, torch.Generator().manual_seed(3), 2, pad_value, flip=True)
    assert torch.equal(a, b) and a.shape == x.shape
    # every output pixel is either padding or an input pixel of the same image
    for i in range(2):
        assert set(a[i].flatten().tolist()) <= set(x[i].flatten().tolist()) | {-1.0}


def test_batch_iterator_resumes_mid_epoch(tmp_path):
    make_idx_dir(tmp_path, n_train=100)
    b = load_dataset("idx", str(tmp_path), val_size=10)
    it = BatchIterator(b.train, 16, shuffle=True, seed=5, augment_pad=2, pad_value=b.pad_value, drop_last=True)
    full = list(it.epoch(2))
    tail = list(it.epoch(2, start_step=3))
    assert len(full) == len(it) == 5 and len(tail) == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(full[3:], tail))
    assert not torch.equal(list(it.epoch(3))[0][1], full[0][1])


def test_real_fashion_mnist(fmnist_root):
    b = load_dataset("fashion-mnist", fmnist_root)
    assert (len(b.train), len(b.val), len(b.test)) == (55000, 5000, 10000)
    assert b.num_classes == 10 and b.flip
    assert torch.bincount(b.test.y).tolist() == [1000] * 10


def test_npz_dataset_and_its_errors(tmp_path):
    import numpy as np

    from nas_kd.data import DatasetError, load_dataset

    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 255, (40, 12, 12), dtype=np.uint8), "y_train": rng.integers(0, 3, 40),
              "x_test": rng.integers(0, 255, (10, 12, 12), dtype=np.uint8), "y_test": rng.integers(0, 3, 10)}
    np.savez(tmp_path / "data.npz", **arrays)
    d = load_dataset("npz", str(tmp_path), val_size=8)
    assert d.train.x.shape == (32, 1, 12, 12) and d.num_classes == 3 and d.input_shape == (1, 12, 12) and not d.flip
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in arrays.items() if k != "y_test"})
    with pytest.raises(DatasetError, match="missing arrays \\['y_test'\\]"):
        load_dataset("npz", str(tmp_path / "bad.npz"), val_size=8)
    np.savez(tmp_path / "float.npz", **{**arrays, "x_train": arrays["x_train"].astype(np.float32)})
    with pytest.raises(DatasetError, match="x_train must be uint8"):
        load_dataset("npz", str(tmp_path / "float.npz"), val_size=8)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable npz file"):
        load_dataset("npz", str(tmp_path / "junk.npz"), val_size=8)
    np.savez(tmp_path / "sizes.npz", **{**arrays, "x_test": rng.integers(0, 255, (10, 14, 14), dtype=np.uint8)})
    with pytest.raises(DatasetError, match=r"x_train images are \(1, 12, 12\) but x_test \(1, 14, 14\)"):
        load_dataset("npz", str(tmp_path / "sizes.npz"), val_size=8)
    np.savez(tmp_path / "labels.npz", **{**arrays, "y_test": np.full(10, 7)})
    with pytest.raises(DatasetError, match="y_test holds label 7, but y_train's labels stop at 2"):
        load_dataset("npz", str(tmp_path / "labels.npz"), val_size=8)
    np.savez(tmp_path / "count.npz", **{**arrays, "y_train": arrays["y_train"][:39]})
    with pytest.raises(DatasetError, match="x_train holds 40 images but y_train 39 labels"):
        load_dataset("npz", str(tmp_path / "count.npz"), val_size=8)


def test_cifar100_python_files(tmp_path):
    import pickle

    import numpy as np

    from nas_kd.data import DatasetError, load_dataset

    rng = np.random.default_rng(0)
    for name, n in (("train", 30), ("test", 6)):
        batch = {b"data": rng.integers(0, 255, (n, 3 * 32 * 32), dtype=np.uint8), b"fine_labels": list(rng.integers(0, 100, n))}
        (tmp_path / name).write_bytes(pickle.dumps(batch))
    d = load_dataset("cifar100", str(tmp_path), val_size=5)
    assert d.train.x.shape == (25, 3, 32, 32) and d.in_channels == 3 and d.flip
    (tmp_path / "test").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="not a CIFAR-100 python batch"):
        load_dataset("cifar100", str(tmp_path), val_size=5)
