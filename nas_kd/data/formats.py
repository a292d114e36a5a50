"""Dataset file formats, read into uint8 NCHW images and int64 labels: IDX (MNIST-style), CIFAR-10/100 python
batches, npz arrays and image folders (listed without decoding, so one larger than memory can stream:
:class:`LazyImages`). Every reader names the file at fault in a :class:`DatasetError`."""
from __future__ import annotations

import gzip
import io
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas_kd.errors import UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
DATA_ENV = "NAS_KD_DATA"  # a directory of the dataset's files, when data.root is unset
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# IDX magic: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions.
_IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}


class DatasetError(UserError):
    """A dataset file is missing or malformed; the message names the file and the problem."""


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DatasetError(f"{path}: cannot read ({e.strerror})") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path}: corrupt gzip data ({e})") from None
    return raw


def read_idx(path: str | Path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes with ``ndim`` dimensions (3: images, 1: labels)."""
    path = Path(path)
    data = _open_bytes(path)
    if len(data) < 4 + 4 * ndim:
        raise DatasetError(f"{path}: truncated header ({len(data)} bytes)")
    magic = int.from_bytes(data[:4], "big")
    if magic != _IDX_MAGIC[ndim]:
        raise DatasetError(
            f"{path}: wrong IDX magic number 0x{magic:08x}, expected 0x{_IDX_MAGIC[ndim]:08x} "
            f"({ndim}-d unsigned bytes)"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    body = data[4 + 4 * ndim :]
    expected = int(np.prod(dims))
    if len(body) != expected:
        raise DatasetError(
            f"{path}: truncated or padded file: header says {dims} = {expected} bytes, found {len(body)}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DatasetError(
        f"{root}: missing {stem} (or {stem}.gz). Put the four IDX files there "
        f"({', '.join(IDX_FILES.values())}) or point data.root / ${DATA_ENV} at them"
        + (" (on Debian: apt-get install dataset-fashion-mnist)" if str(root) == FASHION_MNIST_DIR else "")
    )


def _pair(images: np.ndarray, labels: np.ndarray, img_path: Path, lbl_path: Path):
    if len(images) != len(labels):
        raise DatasetError(
            f"{img_path} has {len(images)} images but {lbl_path} has {len(labels)} labels"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def load_idx(root: str | Path) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Load an IDX dataset directory (MNIST layout) as uint8 ``(N,1,H,W)`` images and int64 labels."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory does not exist")
    out = []
    for split in ("train", "test"):
        ip, lp = _find(root, IDX_FILES[f"{split}_images"]), _find(root, IDX_FILES[f"{split}_labels"])
        out.append(_pair(read_idx(ip, 3)[:, None], read_idx(lp, 1), ip, lp))
    return out[0], out[1]


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches: plain containers and numpy arrays only, never arbitrary objects."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def write_idx(root: str | Path, n_train: int = 512, n_test: int = 128, seed: int = 0) -> str:
    """Write tiny synthetic Fashion-MNIST-shaped IDX files under ``root`` (learnable: each class brightens its own
    band of rows); returns ``root``. What the tests and the IDX datasets' contract use."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 100, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 7] = 220
        for kind, magic, dims, body in (("images-idx3", 0x803, (n, 28, 28), images), ("labels-idx1", 0x801, (n,), labels)):
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
            (root / f"{split}-{kind}-ubyte.gz").write_bytes(gzip.compress(header + body.tobytes()))
    return str(root)


def _cifar_batch(path: Path, label_key: bytes = b"labels", kind: str = "CIFAR-10") -> tuple[np.ndarray, np.ndarray]:
    try:
        d = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(d[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise DatasetError(f"{path}: missing {kind} batch file") from None
    except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
        raise DatasetError(f"{path}: not a {kind} python batch ({e})") from None
    return x, y


def load_cifar10(root: str | Path):
    """Load CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``) from ``root``."""
    root = Path(root)
    parts = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6)]
    tx, ty = _cifar_batch(root / "test_batch")
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return _pair(x, y, root / "data_batch_*", root / "data_batch_*"), _pair(tx, ty, root / "test_batch", root / "test_batch")


def load_cifar100(root: str | Path):
    """Load CIFAR-100 python files (``train``, ``test``; the 100 fine labels) from ``root``."""
    root = Path(root)
    x, y = _cifar_batch(root / "train", b"fine_labels", "CIFAR-100")
    tx, ty = _cifar_batch(root / "test", b"fine_labels", "CIFAR-100")
    return _pair(x, y, root / "train", root / "train"), _pair(tx, ty, root / "test", root / "test")


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_npz(root: str | Path):
    """Load ``data.npz`` from ``root`` (or ``root`` itself if it is a file) holding uint8 images ``x_train`` /
    ``x_test`` as (N, H, W) or (N, C, H, W) and integer labels ``y_train`` / ``y_test``."""
    path = Path(root)
    path = path / "data.npz" if path.is_dir() else path
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DatasetError(f"{path}: missing arrays {missing} (an npz dataset holds {', '.join(NPZ_KEYS)})")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such npz file") from None
    except (ValueError, OSError) as e:
        raise DatasetError(f"{path}: not a readable npz file ({e})") from None
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim not in (3, 4):
            raise DatasetError(f"{path}: x_{split} must be uint8 images (N, H, W) or (N, C, H, W), got {x.dtype} {x.shape}")
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
            raise DatasetError(f"{path}: y_{split} must be non-negative integer labels (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DatasetError(f"{path}: x_{split} holds {len(x)} images but y_{split} {len(y)} labels")
        x = x[:, None] if x.ndim == 3 else x
        out.append(_pair(x, y.astype(np.int64), path, path))
    (xt, yt), (xs, ys) = ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"]))
    shapes = [a.shape[1:] if a.ndim == 4 else (1, *a.shape[1:]) for a in (xt, xs)]
    if shapes[0] != shapes[1]:
        raise DatasetError(f"{path}: x_train images are {tuple(shapes[0])} but x_test {tuple(shapes[1])}: both splits "
                           "must hold images of one shape")
    if len(ys) and len(yt) and ys.max() > yt.max():
        raise DatasetError(f"{path}: y_test holds label {int(ys.max())}, but y_train's labels stop at "
                           f"{int(yt.max())}: a class the training split never shows")
    return tuple(out)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
FOLDER_TEST_FRACTION = 0.2  # without train/ and test/ sub-folders: this share of each class is the test split


@contextmanager
def _open_image(path: Path):
    """The Pillow image at ``path``; an unreadable file is a :class:`DatasetError` naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            yield im
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DatasetError(f"{path}: not a readable image ({e})") from None


def _mode(path: Path) -> str:
    with _open_image(path) as im:
        return im.mode


def _read_image(path: Path, mode: str) -> np.ndarray:
    """One image file as uint8 (C, H, W), decoded by Pillow in ``mode`` (``L`` or ``RGB``)."""
    with _open_image(path) as im:
        arr = np.asarray(im.convert(mode), dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def _class_files(root: Path) -> dict[str, list[Path]]:
    """``{class folder name: image files}`` of an image-folder split; empty classes and no classes are errors."""
    classes = sorted(d for d in root.iterdir() if d.is_dir()) if root.is_dir() else []
    if not classes:
        raise DatasetError(f"{root}: no class folders (an image folder holds one sub-folder of images per class)")
    out = {}
    for d in classes:
        files = sorted(f for f in d.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DatasetError(f"{d}: class folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        out[d.name] = files
    return out


@dataclass
class FileIndex:
    """A dataset of image files, listed and checked but not decoded: labels, Pillow mode, (C, H, W)."""

    train: tuple[list[Path], np.ndarray]
    test: tuple[list[Path], np.ndarray]
    mode: str
    shape: tuple[int, int, int]


def index_imagefolder(root: str | Path) -> FileIndex:
    """List an image-folder dataset: ``root/train/<class>/*.png`` and ``root/test/<class>/...`` (PNG, JPEG, ...),
    or ``root/<class>/...`` split per class with a fixed seed (:data:`FOLDER_TEST_FRACTION` to test). Classes
    are the sorted folder names; images are grey if every one is greyscale, else RGB, and must share the first
    image's size (checked as each is decoded)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset directory does not exist")
    if (root / "train").is_dir():
        train, test = _class_files(root / "train"), _class_files(root / "test")
        if list(train) != list(test):
            raise DatasetError(f"{root}: train/ and test/ hold different class folders "
                               f"({sorted(set(train) ^ set(test))})")
    else:
        train, test, rng = {}, {}, np.random.default_rng(0)
        for name, files in _class_files(root).items():
            order = rng.permutation(len(files))
            n_test = int(round(FOLDER_TEST_FRACTION * len(files)))
            test[name], train[name] = [files[i] for i in order[:n_test]], [files[i] for i in order[n_test:]]
    everything = [f for split in (train, test) for files in split.values() for f in files]
    with _open_image(everything[0]) as first:
        width, height = first.size
    grey = all(_mode(f) in ("L", "1") for f in everything)

    def flat(split: dict[str, list[Path]]) -> tuple[list[Path], np.ndarray]:
        pairs = [(f, label) for label, files in enumerate(split.values()) for f in files]
        return [f for f, _ in pairs], np.array([label for _, label in pairs], np.int64)

    return FileIndex(flat(train), flat(test), "L" if grey else "RGB", (1 if grey else 3, height, width))


def decode(files: list[Path], mode: str, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (N, C, H, W) of ``files``; an unreadable file or one of another size is an error naming it."""
    out = np.zeros((len(files), *shape), np.uint8)
    for i, f in enumerate(files):
        x = _read_image(f, mode)
        if x.shape != shape:
            raise DatasetError(f"{f}: {x.shape[2]}x{x.shape[1]} pixels, but the dataset's images are "
                               f"{shape[2]}x{shape[1]}: resize the images to one size")
        out[i] = x
    return out


def decode_index(index: FileIndex, root: str | Path):
    """Every file of ``index`` decoded: ``((x_train, y_train), (x_test, y_test))`` like a ``load``."""
    return tuple(_pair(decode(files, index.mode, index.shape), labels, Path(root), Path(root))
                 for files, labels in (index.train, index.test))


def load_imagefolder(root: str | Path):
    """Decode a whole image-folder dataset (:func:`index_imagefolder`) into memory."""
    return decode_index(index_imagefolder(root), root)


class LazyImages:
    """Image files decoded and normalised on access, indexable like the tensor it stands for (an int, a
    slice or an index tensor gives a float32 NCHW tensor); ``workers`` processes decode training batches."""

    def __init__(self, files: list[Path], mode: str, shape: tuple[int, int, int], mean: torch.Tensor,
                 std: torch.Tensor, workers: int = 0) -> None:
        self.files, self.mode, self.image_shape = files, mode, shape
        self.mean, self.std, self.workers = mean, std, workers

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.files), *self.image_shape)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> torch.Tensor:
        rows = range(len(self.files))[key] if isinstance(key, (slice, int)) else torch.as_tensor(key).tolist()
        single = isinstance(rows, int)
        raw = torch.from_numpy(decode([self.files[i] for i in ([rows] if single else rows)], self.mode, self.image_shape))
        x = ((raw.float() / 255.0 - self.mean) / self.std).contiguous()
        return x[0] if single else x
