"""Dense MultiMNIST: per-pixel segmentation, depth and normals from real MNIST digits.

polytask's own construction (not from a paper), an offline stand-in for NYUv2 that runs
on a CPU. Two MNIST digits are placed on the 36×36 MultiMNIST canvas as in Sener &
Koltun (NeurIPS 2018): one at the top-left, one at the bottom-right, each shifted by
0..2 pixels towards the centre. One of the two, chosen at random, is in front at depth
1; the other lies behind at a random depth z ∈ [1.5, 3], and its brightness falls as
1/z. The canvas is the front digit composited *over* the back one:
``I = a_f + (1 − a_f) · a_b / z`` with ``a`` the digits' intensities in [0, 1].

Three tasks, as on NYUv2:

- ``segmentation`` (3 classes): which digit each pixel shows — 0 background (both
  intensities < 0.05), 1 the top-left digit, 2 the bottom-right one — the front digit
  where it has ink (a ≥ 0.5), the back digit where only it has ink; the anti-aliased
  rims in between are ignored (-1). Where the digits overlap this needs telling which
  one is in front. With ``classes=11`` the labels are 1 + the digit's class instead
  (digit segmentation, harder: it needs recognising the digits).
- ``depth``: 1 on the front digit's ink, z on the back digit's visible ink, 0 (no
  measurement) on the background and the rims. Needs the occlusion order and the
  brightness of the back digit.
- ``normal``: the normals of the canvas seen as a height field h = 3·I,
  n ∝ (−∂h/∂x, −∂h/∂y, 1) by central differences, on the pixels where I ≥ 0.05; the
  zero vector (missing) on the background. A local task, like NYUv2's normals.

The same seed gives the same data. ``polytask data get mnist`` provides MNIST.
"""

from __future__ import annotations

import os

import numpy as np

from polytask.data.digits import load_mnist
from polytask.data.splits import Split

__all__ = ["CANVAS", "make_dense_multimnist", "load_dense_multimnist"]

CANVAS = 36
INK, BACKGROUND = 0.5, 0.05
_SPLITS = ("train", "val", "test")


def _place(images: np.ndarray, corner: str, shifts: np.ndarray) -> np.ndarray:
    n, h, w = images.shape
    out = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    off = CANVAS - h
    for i in range(n):
        dy, dx = shifts[i]
        y, x = (dy, dx) if corner == "top-left" else (off - dy, off - dx)
        out[i, y:y + h, x:x + w] = images[i]
    return out


def make_dense_multimnist(images: np.ndarray, labels: np.ndarray, seed: int | tuple,
                          max_shift: int = 2, classes: int = 3) -> Split:
    """Build the dense MultiMNIST split from (N, 28, 28) images in [0, 1] and their
    labels (see the module docstring). Sample i uses image i at the top-left and a
    random partner from the same images at the bottom-right."""
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    if images.ndim != 3 or len(images) != len(labels):
        raise ValueError(f"images (N, H, W) and N labels expected, got {images.shape}, "
                         f"{labels.shape}")
    n = len(images)
    rng = np.random.default_rng(seed)
    partner = rng.integers(0, n, size=n)
    left = _place(images, "top-left", rng.integers(0, max_shift + 1, size=(n, 2)))
    right = _place(images[partner], "bottom-right", rng.integers(0, max_shift + 1, size=(n, 2)))
    left_front = rng.random(n) < 0.5
    z = rng.uniform(1.5, 3.0, size=n).astype(np.float32)
    lf = left_front[:, None, None]
    a_f = np.where(lf, left, right)
    a_b = np.where(lf, right, left)
    if classes == 11:
        c_f = np.where(left_front, labels, labels[partner])
        c_b = np.where(left_front, labels[partner], labels)
    elif classes == 3:  # 1 + the label below is 1 for the top-left digit, 2 for the other
        c_f = np.where(left_front, 0, 1)
        c_b = 1 - c_f
    else:
        raise ValueError(f"dense MultiMNIST: classes is 3 or 11, got {classes}")
    zz = z[:, None, None]
    canvas = a_f + (1 - a_f) * a_b / zz

    front_ink = a_f >= INK
    back_ink = (a_b >= INK) & (a_f < BACKGROUND)
    background = (a_f < BACKGROUND) & (a_b < BACKGROUND)
    seg = np.full((n, CANVAS, CANVAS), -1, dtype=np.int64)
    seg[background] = 0
    seg = np.where(front_ink, 1 + c_f[:, None, None], seg)
    seg = np.where(back_ink, 1 + c_b[:, None, None], seg)
    depth = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    depth = np.where(front_ink, np.float32(1.0), depth)
    depth = np.where(back_ink, zz, depth).astype(np.float32)

    height = 3.0 * canvas
    gy, gx = np.gradient(height, axis=(1, 2))
    normal = np.stack([-gx, -gy, np.ones_like(gx)], axis=1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    normal *= (canvas >= BACKGROUND)[:, None]
    return Split(
        x=canvas[:, None].astype(np.float32),
        targets={
            "segmentation": seg,
            "depth": depth[:, None],
            "normal": normal.astype(np.float32),
        },
    )


def load_dense_multimnist(data_dir: str | os.PathLike[str] | None = None, seed: int = 0,
                          sizes: tuple[int, int, int] = (6000, 1000, 1000),
                          classes: int = 3) -> dict[str, Split]:
    """Dense MultiMNIST from ``<data_dir>/mnist/mnist.pkl.gz``: the first ``sizes``
    images of MNIST's train, val and test splits, each split built with its own seed
    derived from ``seed``. Returns ``{"train"|"val"|"test": Split}``."""
    mnist = load_mnist(data_dir)
    out = {}
    for i, (split, size) in enumerate(zip(_SPLITS, sizes)):
        x, y = mnist[split]
        if size > len(x):
            raise ValueError(f"dense MultiMNIST: {size} {split} images asked, MNIST has {len(x)}")
        out[split] = make_dense_multimnist(x[:size], y[:size], (seed, i), classes=classes)
    return out
