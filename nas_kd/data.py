"""Dataset loading (IDX, CIFAR-10/100 python batches, npz arrays, image folders), seeded splits and
in-memory batch iteration.

Datasets here are small, so they are held as tensors in memory. Every random choice
(shuffle, augmentation) is a pure function of ``(seed, epoch, step)``, which makes a run
resumable at any step and repeatable on one machine.
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import torch

from nas_kd.errors import UserError
from nas_kd.registry import Registry

if TYPE_CHECKING:
    from nas_kd.config import Recipe

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DATA_ENV = "NAS_KD_DATA"
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


def default_root(dataset: str) -> str:
    """Default directory of ``dataset``: ``$NAS_KD_DATA`` if set, else its Debian install path."""
    if os.environ.get(DATA_ENV):
        return os.environ[DATA_ENV]
    kind = dataset_kind(dataset)
    if kind.default_dir is None:
        raise DatasetError(f"dataset {dataset!r} has no default directory: set data.root or ${DATA_ENV}")
    return kind.default_dir


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
        x = x[:, None] if x.ndim == 3 else x
        out.append(_pair(x, y.astype(np.int64), path, path))
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


# Horizontal flips keep the label for clothes and natural images, not for digits.


@dataclass
class Split:
    """Normalised images ``x`` (float32, NCHW; a tensor, or :class:`LazyImages` decoded a batch at a time)
    and labels ``y`` (int64)."""

    x: "torch.Tensor | LazyImages"
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)



@dataclass
class DataBundle:
    """Train / val / test splits plus what augmentation needs to know."""

    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, int, int]  # (C, H, W) of one image
    pad_value: torch.Tensor  # per-channel value of a black pixel after normalisation
    flip: bool

    @property
    def in_channels(self) -> int:
        return self.input_shape[0]

    def space(self, name: str):
        """The search space ``name`` built for this data's input shape and classes."""
        import search_spaces

        return search_spaces.get(name, input_shape=self.input_shape, num_classes=self.num_classes)


@dataclass(frozen=True)
class DatasetKind:
    """How to read one kind of dataset: ``load(root)`` gives ``((x_train, y_train), (x_test, y_test))`` as
    uint8 NCHW images and int64 labels; ``flip`` says whether horizontal flips keep labels valid;
    ``index(root)``, for datasets of files, lists them without decoding, so one larger than memory streams."""

    load: Callable[[str | Path], tuple]
    flip: bool
    default_dir: str | None = None
    index: Callable[[str | Path], FileIndex] | None = None


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


DATASETS: Registry = Registry("dataset")
DATASETS.register("fashion-mnist")(DatasetKind(load_idx, True, FASHION_MNIST_DIR))
DATASETS.register("mnist")(DatasetKind(load_idx, False, "/usr/share/datasets/mnist"))
DATASETS.register("idx")(DatasetKind(load_idx, False))  # any IDX directory (no flips: digits, letters)
DATASETS.register("cifar10")(DatasetKind(load_cifar10, True))
DATASETS.register("cifar100")(DatasetKind(load_cifar100, True))
DATASETS.register("npz")(DatasetKind(load_npz, False))  # your own arrays (no flips: their meaning is unknown)
DATASETS.register("imagefolder")(DatasetKind(load_imagefolder, False, index=index_imagefolder))  # one folder per class


def dataset_kind(name: str) -> DatasetKind:
    """The registered dataset ``name``; an unknown one lists the available ones."""
    try:
        return DATASETS.get(name)
    except KeyError as e:
        raise DatasetError(f"data.dataset: {e.args[0]}") from None


def load_dataset(
    name: str,
    root: str | None = None,
    *,
    val_size: int = 5000,
    split_seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    memory_limit_mb: float = 4096,
    workers: int = 2,
) -> DataBundle:
    """Load the registered dataset ``name`` (:data:`DATASETS`) into normalised splits.

    The validation split is carved from the train set with a permutation seeded by
    ``split_seed``; the test set is kept apart. ``limit_*`` keep the first examples (for tests).
    Normalisation uses the train split's per-channel mean and std. A dataset of files (``kind.index``)
    whose float images would take more than ``memory_limit_mb`` streams instead: :func:`_stream`.
    """
    kind = dataset_kind(name)
    root = root or default_root(name)
    if kind.index is None:
        (xtr, ytr), (xte, yte) = kind.load(root)
    else:  # listed once: streamed if too large, else decoded from the same listing
        index = kind.index(root)
        images = len(index.train[0]) + len(index.test[0])
        if 4 * images * int(np.prod(index.shape)) > memory_limit_mb * 2**20:
            return _stream(index, kind, val_size, split_seed, limit_train, limit_test, workers)
        (xtr, ytr), (xte, yte) = decode_index(index, root)
    train_idx, val_idx = _split_rows(len(ytr), val_size, split_seed, limit_train)
    if limit_test is not None:
        xte, yte = xte[:limit_test], yte[:limit_test]
    xtrain = xtr[train_idx].float() / 255.0
    mean = xtrain.mean(dim=(0, 2, 3), keepdim=True)
    std = xtrain.std(dim=(0, 2, 3), keepdim=True)

    def norm(x: torch.Tensor) -> torch.Tensor:
        return ((x.float() / 255.0 - mean) / std).contiguous()

    return DataBundle(
        train=Split((xtrain - mean) / std, ytr[train_idx]),
        val=Split(norm(xtr[val_idx]), ytr[val_idx]),
        test=Split(norm(xte), yte),
        num_classes=int(max(ytr.max(), yte.max())) + 1,
        input_shape=tuple(int(v) for v in xtr.shape[1:]),
        pad_value=(-mean / std).view(-1),
        flip=kind.flip,
    )


def _split_rows(n: int, val_size: int, split_seed: int, limit_train: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(train rows, validation rows) of a training set of ``n``: a permutation seeded by ``split_seed``;
    ``limit_train`` keeps the first training rows and a fifth as many validation rows."""
    if not 0 <= val_size < n:
        raise DatasetError(f"data.val_size={val_size} must be in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    val_idx, train_idx = perm[:val_size], perm[val_size:]
    if limit_train is not None:
        train_idx = train_idx[:limit_train]
        val_idx = val_idx[: max(1, min(val_size, limit_train // 5))]
    return train_idx, val_idx


STATS_SAMPLE = 1000  # training images the mean and std of a streamed dataset are estimated from


def _stream(index: FileIndex, kind: DatasetKind, val_size: int, split_seed: int, limit_train: int | None,
            limit_test: int | None, workers: int) -> DataBundle:
    """Splits of :class:`LazyImages`, drawn exactly as :func:`load_dataset` draws in-memory ones; the
    normalisation statistics come from up to :data:`STATS_SAMPLE` seeded training images."""
    files, ytr = index.train
    test_files, yte = index.test
    train_idx, val_idx = _split_rows(len(ytr), val_size, split_seed, limit_train)
    if limit_test is not None:
        test_files, yte = test_files[:limit_test], yte[:limit_test]
    sample = train_idx[torch.randperm(len(train_idx), generator=torch.Generator().manual_seed(split_seed))[:STATS_SAMPLE]]
    x = torch.from_numpy(decode([files[i] for i in sample.tolist()], index.mode, index.shape)).float() / 255.0
    mean, std = x.mean(dim=(0, 2, 3), keepdim=True), x.std(dim=(0, 2, 3), keepdim=True)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    def split(chosen: list[Path], labels: torch.Tensor, w: int = 0) -> Split:
        return Split(LazyImages(chosen, index.mode, index.shape, mean, std, w), labels)

    return DataBundle(
        train=split([files[i] for i in train_idx.tolist()], ytr[train_idx], workers),
        val=split([files[i] for i in val_idx.tolist()], ytr[val_idx]),
        test=split(list(test_files), yte),
        num_classes=int(max(ytr.max(), yte.max())) + 1, input_shape=index.shape,
        pad_value=(-mean / std).view(-1), flip=kind.flip,
    )


def step_seed(seed: int, epoch: int, step: int = -1) -> int:
    """A well-mixed seed for one (seed, epoch, step): every per-step random choice derives from it."""
    return int(np.random.SeedSequence([seed, epoch, step + 1]).generate_state(1)[0])


def _rng(seed: int, epoch: int, step: int = -1) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, epoch, step))


def augment(x: torch.Tensor, gen: torch.Generator, pad: int, pad_value: torch.Tensor, flip: bool) -> torch.Tensor:
    """Random crop after ``pad`` pixels of (black) padding, and a random horizontal flip if ``flip``."""
    n, c, h, w = x.shape
    padded = pad_value.view(1, c, 1, 1).expand(n, c, h + 2 * pad, w + 2 * pad).clone()
    padded[:, :, pad : pad + h, pad : pad + w] = x
    rows = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) + torch.arange(h)
    cols = torch.randint(0, 2 * pad + 1, (n, 1), generator=gen) + torch.arange(w)
    if flip:
        cols = torch.where(torch.rand(n, 1, generator=gen) < 0.5, cols.flip(-1), cols)
    batch, chan = torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


class BatchIterator:
    """Iterates a :class:`Split` in batches; shuffling and augmentation derive from (seed, epoch, step)."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment_pad: int = 0,
        pad_value: torch.Tensor | None = None,
        flip: bool = False,
        drop_last: bool = False,
        with_index: bool = False,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.shuffle, self.seed = split, batch_size, shuffle, seed
        self.augment_pad, self.flip, self.drop_last, self.with_index = augment_pad, flip, drop_last, with_index
        self.pad_value = pad_value if pad_value is not None else torch.zeros(split.x.shape[1])

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches ``(x, y)`` of ``epoch`` from ``start_step`` on (to resume mid-epoch); ``(x, y, index)``
        with ``with_index``, ``index`` being the rows of the split (for per-example caches)."""
        n = len(self.split)
        order = torch.randperm(n, generator=_rng(self.seed, epoch)) if self.shuffle else torch.arange(n)
        steps = range(start_step, len(self))
        chunks = [order[step * self.batch_size : (step + 1) * self.batch_size] for step in steps]
        for step, idx, x in zip(steps, chunks, self._images(chunks)):
            y = self.split.y[idx]
            if self.augment_pad or self.flip:
                x = augment(x, _rng(self.seed, epoch, step), self.augment_pad, self.pad_value, self.flip)
            yield (x, y, idx) if self.with_index else (x, y)

    def _images(self, chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The images of each chunk of rows, in order: decoded ahead by worker processes when the split
        streams from files, else sliced from memory."""
        x = self.split.x
        if isinstance(x, LazyImages) and x.workers > 0:
            from torch.utils.data import DataLoader

            yield from DataLoader(_Rows(x, chunks), batch_size=None, num_workers=x.workers, prefetch_factor=4)
        else:
            yield from (x[idx] for idx in chunks)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.epoch(0)


class _Rows:
    """Chunks of rows of a :class:`LazyImages` as a map-style dataset (one decoded batch per item)."""

    def __init__(self, images: LazyImages, chunks: list[torch.Tensor]) -> None:
        self.images, self.chunks = images, chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[self.chunks[i]]


def load_data(recipe: "Recipe") -> DataBundle:
    """The recipe's dataset, split and normalised."""
    d = recipe.data
    return load_dataset(
        d.dataset, d.root, val_size=d.val_size, split_seed=d.split_seed,
        limit_train=d.limit_train, limit_test=d.limit_test, memory_limit_mb=d.memory_limit_mb, workers=d.workers,
    )


def calibration_batches(recipe: "Recipe", data: DataBundle) -> BatchIterator:
    """Shuffled, unaugmented training batches for BatchNorm recalibration."""
    return BatchIterator(data.train, recipe.data.batch_size, shuffle=True, seed=recipe.seed)
