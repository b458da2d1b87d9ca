"""NYUv2 and Cityscapes in the preprocessed ``.npy`` layout of the MTAN and LibMTL code.

Layout (Liu, Johns & Davison, CVPR 2019, ``lorenmt/mtan``; LibMTL ``examples/nyu`` and
``examples/cityscapes``)::

    DIR/{train,val}/image/{i}.npy    float (H, W, 3)
    DIR/{train,val}/label/{i}.npy    float or int (H, W), class ids, -1 = ignored
    DIR/{train,val}/depth/{i}.npy    float (H, W, 1), 0 = no measurement
    DIR/{train,val}/normal/{i}.npy   float (H, W, 3), NYUv2 only, 0 = no normal

with ``i`` = 0 .. n-1. NYUv2: 795 train / 654 val images of 288×384, 13 classes, three
tasks. Cityscapes: 2,975 / 500 images of 128×256, two tasks; the 7-class labels are in
``label/`` (LibMTL) or ``label_7/`` and the 19-class ones in ``label_19/`` (MTAN).

The data cannot be downloaded by polytask: the MTAN repository's README links the
preprocessed archives (NYUv2 and Cityscapes), which LibMTL uses too; unpack one and give
its directory (``polytask bench nyuv2 --data DIR``). The ``val`` split is the protocol's
test split (both papers report on it).

The standard augmentation (:func:`augment_batch`): random scale-crop (scales 1, 1.2,
1.5, depth divided by the scale) and horizontal flip (the normal's x negated), as LibMTL's
``RandomScaleCrop`` (credited there to lorenmt/mtan issue 34), which neither paper's
baselines used (LibMTL's ``--aug`` flag).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from polytask.data.paths import DatasetNotFoundError
from polytask.errors import PolytaskError, ShapeMismatchError

__all__ = [
    "DenseData",
    "DenseSplit",
    "augment_batch",
    "load_cityscapes",
    "load_nyuv2",
    "read_dense_split",
]

#: Sizes of the real data sets (train, val), image size, classes.
NYUV2 = {"train": 795, "val": 654, "size": (288, 384), "classes": 13}
CITYSCAPES = {"train": 2975, "val": 500, "size": (128, 256), "classes": (7, 19)}


@dataclass(frozen=True)
class DenseSplit:
    """One split: ``x`` float32 (N, 3, H, W) and ``targets`` by task: ``segmentation``
    int64 (N, H, W), ``depth`` float32 (N, 1, H, W), ``normal`` float32 (N, 3, H, W)."""

    x: np.ndarray
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class DenseData:
    """The ``train`` and ``val`` splits of a preprocessed dense data set."""

    train: DenseSplit
    val: DenseSplit
    name: str
    num_classes: int


def _indices(folder: Path, what: str) -> int:
    if not folder.is_dir():
        raise DatasetNotFoundError(what, folder / "0.npy")
    names = [n for n in os.listdir(folder) if n.endswith(".npy")]
    if not names:
        raise DatasetNotFoundError(what, folder / "0.npy")
    present = set()
    for n in names:
        stem = n[:-4]
        if not stem.isdigit():
            raise PolytaskError(f"{what}: {folder / n} is not named <index>.npy")
        present.add(int(stem))
    n = len(present)
    missing = sorted(set(range(n)) - present)
    if missing:
        raise PolytaskError(
            f"{what}: {folder} holds {n} files but index {missing[0]} is missing "
            f"({folder / f'{missing[0]}.npy'}); files must be 0.npy .. {n - 1}.npy"
        )
    return n


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise PolytaskError(f"{what}: missing file {path} (first missing index {path.stem})")
    return np.load(path, allow_pickle=False)


def read_dense_split(root: str | os.PathLike[str], split: str,
                     folders: dict[str, str], what: str = "dense data",
                     normalize_normals: bool = True) -> DenseSplit:
    """Read ``root/split/image`` and the target ``folders`` (``{task: subfolder}``, the
    subfolder one of ``label``/``label_7``/``label_19``, ``depth``, ``normal``).

    Every index present in ``image/`` must be present in every target folder, with the
    same H×W; the first missing or mismatched file is named in the error. Labels are
    returned as int64 (their float values must be integers), depth as (N, 1, H, W).
    With ``normalize_normals`` every non-zero normal is scaled to unit length (the
    stored ones are unit up to float error; the loss and the task's check assume it).
    """
    base = Path(root).expanduser() / split
    what = f"{what} ({split})"
    n = _indices(base / "image", what)
    first = _load(base / "image" / "0.npy", what)
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ShapeMismatchError(
            f"{what}: {base / 'image' / '0.npy'} has shape {first.shape}; expected (H, W, 3)"
        )
    h, w = first.shape[:2]
    x = np.empty((n, 3, h, w), dtype=np.float32)
    kinds = {task: folder.split("_")[0] for task, folder in folders.items()}
    shapes = {"label": (h, w), "depth": (h, w, 1), "normal": (h, w, 3)}
    out = {}
    for task, kind in kinds.items():
        if kind not in shapes:
            raise PolytaskError(f"{what}: unknown target folder {folders[task]!r}")
        if not (base / folders[task]).is_dir():
            raise DatasetNotFoundError(what, base / folders[task] / "0.npy")
        if kind == "label":
            out[task] = np.empty((n, h, w), dtype=np.int64)
        else:
            out[task] = np.empty((n, 1 if kind == "depth" else 3, h, w), dtype=np.float32)
    for i in range(n):
        image = _load(base / "image" / f"{i}.npy", what)
        if image.shape != (h, w, 3):
            raise ShapeMismatchError(
                f"{what}: {base / 'image' / f'{i}.npy'} has shape {image.shape}; the split's "
                f"images are {(h, w, 3)}"
            )
        x[i] = np.moveaxis(image, -1, 0)
        for task, kind in kinds.items():
            path = base / folders[task] / f"{i}.npy"
            arr = _load(path, what)
            if kind == "depth" and arr.shape == (h, w):
                arr = arr[..., None]
            if arr.shape != shapes[kind]:
                raise ShapeMismatchError(
                    f"{what}: {path} has shape {arr.shape} but image {i} is {h}×{w} "
                    f"(expected {shapes[kind]})"
                )
            if kind == "label":
                if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
                    raise PolytaskError(f"{what}: {path} holds non-integer class ids")
                out[task][i] = arr.astype(np.int64)
            else:
                out[task][i] = np.moveaxis(arr, -1, 0)
    for task, kind in kinds.items():
        if kind == "normal" and normalize_normals:
            norms = np.linalg.norm(out[task], axis=1, keepdims=True)
            np.divide(out[task], norms, out=out[task], where=norms > 0)
    return DenseSplit(x=x, targets=out)


def load_nyuv2(data_dir: str | os.PathLike[str], *, normalize_normals: bool = True) -> DenseData:
    """NYUv2 (Silberman et al., ECCV 2012) as preprocessed by the MTAN authors: tasks
    ``segmentation`` (13 classes), ``depth`` and ``normal``; 795 train and 654 val
    images of 3×288×384 (other sizes and counts are read as they are)."""
    folders = {"segmentation": "label", "depth": "depth", "normal": "normal"}
    splits = [read_dense_split(data_dir, s, folders, "NYUv2", normalize_normals)
              for s in ("train", "val")]
    return DenseData(*splits, name="nyuv2", num_classes=13)


def load_cityscapes(data_dir: str | os.PathLike[str], num_classes: int = 7) -> DenseData:
    """Cityscapes (Cordts et al., CVPR 2016) as preprocessed by the MTAN authors: tasks
    ``segmentation`` (7 or 19 classes) and ``depth``; 2,975 train and 500 val images of
    3×128×256. Labels come from ``label_{num_classes}/`` when present, else ``label/``."""
    if num_classes not in (7, 19):
        raise PolytaskError(f"Cityscapes: num_classes is 7 or 19, got {num_classes}")
    root = Path(data_dir).expanduser()
    label = f"label_{num_classes}"
    if not (root / "train" / label).is_dir():
        label = "label"
    folders = {"segmentation": label, "depth": "depth"}
    splits = [read_dense_split(root, s, folders, "Cityscapes") for s in ("train", "val")]
    return DenseData(*splits, name=f"cityscapes{num_classes}", num_classes=num_classes)


def _crop(t: Tensor, mode: str, top: int, left: int, h: int, w: int, height: int,
          width: int, flip: bool) -> Tensor:
    """Crop an (H, W) or (C, H, W) tensor, resize to (height, width), maybe flip."""
    window = t[None, ..., top:top + h, left:left + w]
    if window.dim() == 3:
        window = window[:, None]
    kwargs = {"align_corners": True} if mode == "bilinear" else {}
    r = F.interpolate(window.float(), size=(height, width), mode=mode, **kwargs)[0]
    return r.flip(-1) if flip else r


def augment_batch(inputs: Tensor, targets: dict[str, Tensor],
                  scales: Sequence[float] = (1.0, 1.2, 1.5), flip: bool = True,
                  rng: random.Random | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The standard NYUv2 augmentation, per sample: crop a random window 1/s of the
    image's size (s drawn from ``scales``) and resize it back (image and normals
    bilinear, labels and depth nearest, depth divided by s), then flip horizontally with
    probability 1/2 (negating the normal's x component).

    Targets are recognised by their shape: (N, H, W) integer maps are labels, (N, 1,
    H, W) depth, (N, 3, H, W) normals (renormalised after interpolation, and zero where
    the nearest source pixel had no normal). Randomness from ``rng`` (default Python's
    ``random``, seeded by the Trainer).
    """
    rng = rng or random
    n, _, height, width = inputs.shape
    out_x = torch.empty_like(inputs)
    out_t = {k: torch.empty_like(v) for k, v in targets.items()}
    for i in range(n):
        s = scales[rng.randrange(len(scales))]
        h, w = int(height / s), int(width / s)
        top, left = rng.randint(0, height - h), rng.randint(0, width - w)
        flip_i = flip and rng.random() < 0.5

        box = (top, left, h, w, height, width, flip_i)

        def crop(t: Tensor, mode: str, box: tuple = box) -> Tensor:
            return _crop(t, mode, *box)

        out_x[i] = crop(inputs[i], "bilinear")
        for name, t in targets.items():
            sample = t[i]
            if sample.dim() == 2:  # label map
                out_t[name][i] = crop(sample, "nearest")[0].to(t.dtype)
            elif sample.shape[0] == 1:  # depth
                out_t[name][i] = crop(sample, "nearest") / s
            elif sample.shape[0] == 3:  # normals
                normal = crop(sample, "bilinear")
                valid = crop((sample != 0).any(0).float(), "nearest")[0] > 0
                if flip_i:
                    normal[0] = -normal[0]
                norms = normal.norm(dim=0, keepdim=True).clamp_min(1e-12)
                out_t[name][i] = torch.where(valid, normal / norms, torch.zeros_like(normal))
            else:
                raise ShapeMismatchError(
                    f"augment_batch: target {name!r} has per-sample shape "
                    f"{tuple(sample.shape)}; expected (H, W), (1, H, W) or (3, H, W)"
                )
    return out_x, out_t
