"""MNIST, Fashion-MNIST and the overlapping-pair benchmarks built from them.

MultiMNIST (Sabour, Frosst, Hinton, NIPS 2017) as used for multi-task learning by Sener &
Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018: two images
are overlaid on one canvas, the first at the top-left and the second at the
bottom-right, each moved by a small random shift, and the two tasks classify the left
and the right image. MultiFashion and MultiFashion+MNIST (Lin et al., "Pareto Multi-Task
Learning", NeurIPS 2019) use Fashion-MNIST items for one or both sides.

The canvases here are kept at full resolution (36x36 for 28x28 images); Sener & Koltun
then resize to 28x28, which a model's transform can do if wanted.

Pixel scale: every loader returns float32 images in [0, 1] with the byte value 255 mapped
to 1.0. The classic ``mnist.pkl.gz`` stores bytes divided by 256; :func:`load_mnist`
recovers the bytes and divides by 255, the same scale as Fashion-MNIST and as
torchvision's ``ToTensor``.
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polytask.data import _cache
from polytask.data.paths import DatasetNotFoundError, resolve_data_dir
from polytask.data.splits import Split

__all__ = [
    "FASHION_MNIST_CLASSES",
    "OverlappingPairs",
    "load_fashion_mnist",
    "load_mnist",
    "load_multidigits",
    "load_multifashion",
    "load_multifashion_mnist",
    "load_multimnist",
    "make_overlapping_pairs",
    "read_idx",
]

SPLITS = ("train", "val", "test")
MNIST_SUBDIR = "mnist"
MNIST_FILE = "mnist.pkl.gz"
FASHION_SUBDIR = "fashion-mnist"
#: Where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
SYSTEM_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DIGIT_CLASSES = tuple(str(i) for i in range(10))
#: Seed of the fixed train/val/test split of scikit-learn's 8x8 digits.
DIGITS_SPLIT_SEED = 0
_CACHE_VERSION = 1

ImagesAndLabels = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class OverlappingPairs:
    """A two-task image benchmark: ``x`` is float32 (N, 1, S, S) in [0, 1].

    ``targets`` of every split holds ``"left"`` (the top-left image's class) and
    ``"right"`` (the bottom-right image's class), int64.
    """

    train: Split
    val: Split
    test: Split
    name: str
    canvas: int
    class_names: dict[str, tuple[str, ...]]

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, ``("left", "right")``."""
        return self.train.tasks

    @property
    def num_classes(self) -> dict[str, int]:
        """Number of classes of each task."""
        return {k: len(v) for k, v in self.class_names.items()}


# ------------------------------------------------------------------ overlap construction


def _as_images(images: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(images)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f"{what} must have shape (N, H, W) or (N, 1, H, W), got {a.shape}")
    return a


def _default_shift(side: int) -> int:
    return 2 if side >= 16 else 1


def _compose(
    a: np.ndarray,
    b: np.ndarray,
    canvas: int,
    seed: int | Sequence[int],
    max_shift: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Overlay ``a[i]`` (top-left) and ``b[j_i]`` (bottom-right); returns canvases and j."""
    n, h, w = a.shape
    if b.shape[1:] != (h, w):
        raise ValueError(f"images_a are {h}x{w} but images_b are {b.shape[1]}x{b.shape[2]}")
    if len(b) == 0:
        raise ValueError("images_b is empty")
    offset_y, offset_x = canvas - h, canvas - w
    if offset_y < 0 or offset_x < 0:
        raise ValueError(f"canvas {canvas} is smaller than the {h}x{w} images")
    if max_shift is None:
        max_shift = min(_default_shift(min(h, w)), offset_y, offset_x)
    if not 0 <= max_shift <= min(offset_y, offset_x):
        raise ValueError(
            f"max_shift must be in [0, {min(offset_y, offset_x)}] for {h}x{w} images on a "
            f"{canvas}x{canvas} canvas, got {max_shift}"
        )
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(b), size=n)
    shift_a = rng.integers(0, max_shift + 1, size=(n, 2))  # moves a right/down
    shift_b = rng.integers(0, max_shift + 1, size=(n, 2))  # moves b left/up
    dtype = np.result_type(a.dtype, b.dtype)
    out = np.zeros((n, canvas, canvas), dtype=dtype)
    for dy in range(max_shift + 1):
        for dx in range(max_shift + 1):
            idx = np.flatnonzero((shift_a[:, 0] == dy) & (shift_a[:, 1] == dx))
            if len(idx):
                out[idx, dy : dy + h, dx : dx + w] = a[idx]
    for dy in range(max_shift + 1):
        for dx in range(max_shift + 1):
            idx = np.flatnonzero((shift_b[:, 0] == dy) & (shift_b[:, 1] == dx))
            if len(idx):
                y0, x0 = offset_y - dy, offset_x - dx
                region = out[idx, y0 : y0 + h, x0 : x0 + w]
                out[idx, y0 : y0 + h, x0 : x0 + w] = np.maximum(region, b[pick[idx]])
    return out, pick


def _to_unit_float(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:  # one pass, same values as x.astype(float32) / 255
        return np.divide(x, np.float32(255), dtype=np.float32)
    return x.astype(np.float32, copy=False)


def make_overlapping_pairs(
    images_a: np.ndarray,
    labels_a: np.ndarray,
    images_b: np.ndarray,
    labels_b: np.ndarray,
    canvas: int,
    seed: int | Sequence[int],
    *,
    max_shift: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlay pairs of images as in MultiMNIST (Sener & Koltun, NeurIPS 2018).

    Sample ``i`` puts ``images_a[i]`` at the top-left corner of a ``canvas`` x ``canvas``
    image and a randomly drawn ``images_b[j]`` at the bottom-right corner (so with 28x28
    images and ``canvas=36`` they are 8 pixels apart on each axis); each is moved
    towards the centre by a random shift of 0..``max_shift`` pixels per axis (default 2
    for images of side >= 16, else 1) and they are combined by the pixelwise maximum.
    Images are uint8 (0..255) or floats in [0, 1], shape (N, H, W) or (N, 1, H, W).
    The same seed gives the same result.

    Returns ``(x, left_labels, right_labels)``: x float32 (N, 1, canvas, canvas) in [0, 1],
    labels int64.
    """
    a = _as_images(images_a, "images_a")
    b = _as_images(images_b, "images_b")
    la = np.asarray(labels_a)
    lb = np.asarray(labels_b)
    if len(la) != len(a):
        raise ValueError(f"labels_a has {len(la)} entries but images_a has {len(a)} images")
    if len(lb) != len(b):
        raise ValueError(f"labels_b has {len(lb)} entries but images_b has {len(b)} images")
    for name, arr in (("images_a", a), ("images_b", b)):
        if arr.dtype != np.uint8 and arr.dtype.kind != "f":
            raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got {arr.dtype}")
        if arr.dtype.kind == "f" and arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(
                f"{name} must lie in [0, 1] (or be uint8), got [{arr.min()}, {arr.max()}]"
            )
    if a.dtype != b.dtype:  # mixed inputs: compose on the common [0, 1] float scale
        a, b = _to_unit_float(a), _to_unit_float(b)
    out, pick = _compose(a, b, canvas, seed, max_shift)
    x = _to_unit_float(out)[:, None]
    return x, la.astype(np.int64), lb[pick].astype(np.int64)


# ------------------------------------------------------------------------- raw readers


def _mnist_bytes(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read ``mnist.pkl.gz`` as uint8 images (N, 28, 28) and int64 labels per split."""
    path = root / MNIST_SUBDIR / MNIST_FILE
    if not path.is_file():
        raise DatasetNotFoundError("MNIST", path, fetch_name="mnist", data_dir=root)
    with gzip.open(path, "rb") as f:
        # The classic file was pickled by Python 2; latin1 decodes its numpy buffers.
        data = pickle.load(f, encoding="latin1")
    if not (isinstance(data, (tuple, list)) and len(data) == 3):
        raise ValueError(f"{path}: expected a pickled (train, valid, test) tuple")
    out = {}
    for split, part in zip(SPLITS, data):
        if not (isinstance(part, (tuple, list)) and len(part) == 2):
            raise ValueError(f"{path}: the {split} split should be an (images, labels) pair")
        x = np.asarray(part[0])
        y = np.asarray(part[1]).astype(np.int64)
        if x.ndim != 2 or x.shape[1] != 784 or len(x) != len(y):
            raise ValueError(
                f"{path}: the {split} split should hold (N, 784) images and N labels, "
                f"got images {x.shape} and labels {y.shape}"
            )
        out[split] = (_float_to_bytes(x, path).reshape(-1, 28, 28), y)
    return out


def _float_to_bytes(x: np.ndarray, path: Path) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32, copy=False)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"{path}: pixel values should lie in [0, 1]")
    k256 = x * 256
    if np.array_equal(k256, np.round(k256)) and (x.size == 0 or k256.max() <= 255):
        return k256.astype(np.uint8)  # the classic encoding, byte / 256: exact
    return np.round(x * 255).astype(np.uint8)


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST/Fashion-MNIST format), gzipped if its name ends in .gz.

    The header is two zero bytes, a type code (0x08 = uint8, ...), the number of
    dimensions, then each dimension as a big-endian uint32; the data follows.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic number {data[:4].hex() or 'missing'}; expected "
            f"00 00 <type code in {[hex(c) for c in _IDX_DTYPES]}> <ndim>)"
        )
    dtype, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(data)} bytes, needs {header})")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX dims {dims} need {expected} data bytes, file has {len(data) - header}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find_fashion(root: Path) -> dict[str, Path]:
    """The four IDX files from ``<root>/fashion-mnist`` or else the Debian package dir."""
    dirs = [root / FASHION_SUBDIR, SYSTEM_FASHION_DIR]
    for d in dirs:
        found = {}
        for key, base in FASHION_FILES.items():
            for candidate in (d / f"{base}.gz", d / base):
                if candidate.is_file():
                    found[key] = candidate
                    break
        if len(found) == len(FASHION_FILES):
            return found
    missing = next(  # name the first file missing from data_dir
        base
        for base in FASHION_FILES.values()
        if not any((dirs[0] / n).is_file() for n in (f"{base}.gz", base))
    )
    raise DatasetNotFoundError(
        "Fashion-MNIST",
        dirs[0] / f"{missing}.gz",
        fetch_name="fashion-mnist",
        data_dir=root,
        searched=dirs,
    )


def _fashion_bytes(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    files = _find_fashion(root)
    parts = {}
    for split in ("train", "test"):
        x = read_idx(files[f"{split}_images"])
        y = read_idx(files[f"{split}_labels"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y) or x.dtype != np.uint8:
            raise ValueError(
                f"Fashion-MNIST {split}: expected uint8 images (N, H, W) and N labels, got "
                f"{x.dtype} {x.shape} from {files[f'{split}_images']} and {y.shape} from "
                f"{files[f'{split}_labels']}"
            )
        parts[split] = (x, y.astype(np.int64))
    x, y = parts["train"]
    n_val = round(len(x) / 6)  # 10,000 of 60,000: the last sixth, like MNIST's pickle
    cut = len(x) - n_val
    return {
        "train": (x[:cut], y[:cut]),
        "val": (x[cut:], y[cut:]),
        "test": parts["test"],
    }


def _fashion_paths(root: Path) -> list[Path]:
    return list(_find_fashion(root).values())


def _unit(parts: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, ImagesAndLabels]:
    return {k: (_to_unit_float(x), y) for k, (x, y) in parts.items()}


def load_mnist(data_dir: str | os.PathLike[str] | None = None) -> dict[str, ImagesAndLabels]:
    """Load MNIST from ``<data_dir>/mnist/mnist.pkl.gz`` (the classic 50k/10k/10k pickle).

    Returns ``{"train"|"val"|"test": (images float32 (N, 28, 28) in [0, 1], labels int64)}``.
    The file stores byte/256; the images returned are byte/255 (see the module docstring).
    """
    return _unit(_mnist_bytes(resolve_data_dir(data_dir)))


def load_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
) -> dict[str, ImagesAndLabels]:
    """Load Fashion-MNIST from its IDX files (gzipped or not).

    Looks in ``<data_dir>/fashion-mnist/`` and then in ``/usr/share/datasets/fashion-mnist/``
    (Debian's ``dataset-fashion-mnist``). The 60,000 training images are split into the
    first 50,000 for ``train`` and the last 10,000 for ``val``; ``test`` is the 10,000
    t10k images. Returns ``{split: (images float32 (N, 28, 28) in [0, 1], labels int64)}``.
    """
    return _unit(_fashion_bytes(resolve_data_dir(data_dir)))


# ----------------------------------------------------------------- pair benchmarks


def _pairs_from_bytes(
    name: str,
    root: Path,
    left: Callable[[Path], dict[str, tuple[np.ndarray, np.ndarray]]],
    right: Callable[[Path], dict[str, tuple[np.ndarray, np.ndarray]]],
    sources: list[Path],
    class_names: dict[str, tuple[str, ...]],
    seed: int,
    cache: bool,
) -> OverlappingPairs:
    canvas = 36
    sig = _cache.signature(sources, f"{name}-v{_CACHE_VERSION}", f"seed{seed}", canvas)
    cache_path = root / name / f"{name}_seed{seed}.npz"
    arrays = _cache.load(cache_path, sig) if cache else None
    if arrays is None:
        lparts = left(root)
        rparts = lparts if right is left else right(root)
        arrays = {}
        for i, split in enumerate(SPLITS):
            xa, ya = lparts[split]
            xb, yb = rparts[split]
            out, pick = _compose(xa, xb, canvas, (seed, i), None)
            arrays[f"{split}_x"] = out
            arrays[f"{split}_left"] = ya
            arrays[f"{split}_right"] = yb[pick]
        if cache:
            _cache.save(cache_path, {"signature": np.array(sig), **arrays}, compress=True)
    splits = {
        s: Split(
            x=_to_unit_float(arrays[f"{s}_x"])[:, None],
            targets={"left": arrays[f"{s}_left"], "right": arrays[f"{s}_right"]},
        )
        for s in SPLITS
    }
    return OverlappingPairs(**splits, name=name, canvas=canvas, class_names=class_names)


def _mnist_path(root: Path) -> list[Path]:
    path = root / MNIST_SUBDIR / MNIST_FILE
    if not path.is_file():
        raise DatasetNotFoundError("MNIST", path, fetch_name="mnist", data_dir=root)
    return [path]


def load_multimnist(
    data_dir: str | os.PathLike[str] | None = None, seed: int = 0, *, cache: bool = True
) -> OverlappingPairs:
    """MultiMNIST (Sener & Koltun, NeurIPS 2018): two MNIST digits on a 36x36 canvas.

    Built from ``<data_dir>/mnist/mnist.pkl.gz`` (50k/10k/10k); within each split the
    right digit of sample i is drawn at random (``seed``) from the same split. The
    result is cached in ``<data_dir>/multimnist/multimnist_seed{seed}.npz``.
    """
    root = resolve_data_dir(data_dir)
    classes = {"left": DIGIT_CLASSES, "right": DIGIT_CLASSES}
    sources = _mnist_path(root)
    return _pairs_from_bytes(
        "multimnist", root, _mnist_bytes, _mnist_bytes, sources, classes, seed, cache
    )


def load_multifashion(
    data_dir: str | os.PathLike[str] | None = None, seed: int = 0, *, cache: bool = True
) -> OverlappingPairs:
    """MultiFashion (Lin et al., NeurIPS 2019): two Fashion-MNIST items on a 36x36 canvas.

    Uses the files :func:`load_fashion_mnist` reads; cached in
    ``<data_dir>/multifashion/multifashion_seed{seed}.npz``.
    """
    root = resolve_data_dir(data_dir)
    classes = {"left": FASHION_MNIST_CLASSES, "right": FASHION_MNIST_CLASSES}
    sources = _fashion_paths(root)
    return _pairs_from_bytes(
        "multifashion", root, _fashion_bytes, _fashion_bytes, sources, classes, seed, cache
    )


def load_multifashion_mnist(
    data_dir: str | os.PathLike[str] | None = None, seed: int = 0, *, cache: bool = True
) -> OverlappingPairs:
    """MultiFashion+MNIST (Lin et al., NeurIPS 2019): an MNIST digit at the top-left and a
    Fashion-MNIST item at the bottom-right of a 36x36 canvas.

    Cached in ``<data_dir>/multifashion-mnist/multifashion-mnist_seed{seed}.npz``.
    """
    root = resolve_data_dir(data_dir)
    sources = _mnist_path(root) + _fashion_paths(root)
    classes = {"left": DIGIT_CLASSES, "right": FASHION_MNIST_CLASSES}
    return _pairs_from_bytes(
        "multifashion-mnist", root, _mnist_bytes, _fashion_bytes, sources, classes, seed, cache
    )


def load_multidigits(seed: int = 0) -> OverlappingPairs:
    """A small MultiMNIST-like benchmark from scikit-learn's bundled 8x8 digits.

    The 1,797 images (values 0..16, scaled to [0, 1]) are split 60/20/20 into
    train/val/test by a fixed permutation; pairs are overlaid on a 12x12 canvas with
    shifts of up to 1 pixel. ``seed`` chooses the partners and shifts. Needs no download.
    """
    from sklearn.datasets import load_digits  # optional dependency, only needed here

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    n = len(images)
    perm = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(n)
    n_train, n_val = round(0.6 * n), round(0.2 * n)
    index = {
        "train": perm[:n_train],
        "val": perm[n_train : n_train + n_val],
        "test": perm[n_train + n_val :],
    }
    splits = {}
    for i, split in enumerate(SPLITS):
        xs, ys = images[index[split]], labels[index[split]]
        out, pick = _compose(xs, xs, 12, (seed, i), None)
        splits[split] = Split(
            x=_to_unit_float(out)[:, None], targets={"left": ys, "right": ys[pick]}
        )
    return OverlappingPairs(
        **splits,
        name="multidigits",
        canvas=12,
        class_names={"left": DIGIT_CLASSES, "right": DIGIT_CLASSES},
    )
