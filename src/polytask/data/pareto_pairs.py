"""The overlapping-pair benchmarks as Pareto MTL builds them (Lin et al., NeurIPS 2019).

MultiMNIST, MultiFashion and Multi-(Fashion+MNIST) in the Pareto-MTL line of work
(Pareto MTL, EPO, Pareto HyperNetworks, COSMOS all train on these): two items with
different images, one at the top-left and one at the bottom-right of a 36×36 canvas,
each shifted by up to 4 pixels (towards the centre), overlapping (pixelwise maximum);
the model sees the 36×36 canvas itself.

Differences from polytask's Sener–Koltun construction (:mod:`polytask.data.digits`,
benchmarks ``multimnist`` ...): shifts of up to 4 pixels instead of 2, no resizing to
28×28. Differences from the Pareto-MTL pickles (which polytask cannot download): those
hold 120,000 training and 20,000 test canvases; here each split of the source data
(MNIST's 50k/10k/10k pickle, Fashion-MNIST's 50k/10k train/val and 10k test) gives as
many canvases as it has images, the partner of image i drawn at random from the same
split (a different image than i). Deterministic for a given ``seed``.
"""

from __future__ import annotations

import os

import numpy as np

from polytask.data.digits import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    SPLITS,
    OverlappingPairs,
    _fashion_bytes,
    _mnist_bytes,
    _to_unit_float,
)
from polytask.data.paths import resolve_data_dir
from polytask.data.splits import Split

__all__ = ["PARETO_PAIRS", "PARETO_SHIFT", "load_pareto_pairs"]

#: the canvas side and the largest shift of the Pareto-MTL construction
PARETO_CANVAS = 36
PARETO_SHIFT = 4
#: name -> (left source, right source)
PARETO_PAIRS = {
    "multimnist": ("mnist", "mnist"),
    "multifashion": ("fashion", "fashion"),
    "multifashion-mnist": ("mnist", "fashion"),
}


def _partners(n_left: int, n_right: int, same: bool, rng: np.random.Generator) -> np.ndarray:
    pick = rng.integers(0, n_right, size=n_left)
    if same and n_right > 1:  # never pair an image with itself
        clash = pick == np.arange(n_left)
        pick[clash] = (pick[clash] + 1 + rng.integers(0, n_right - 1, clash.sum())) % n_right
    return pick


def load_pareto_pairs(
    name: str, data_dir: str | os.PathLike[str] | None = None, seed: int = 0,
    subset: int | None = None,
) -> OverlappingPairs:
    """One of :data:`PARETO_PAIRS` built the Pareto-MTL way (module docstring).

    ``subset`` keeps the first ``subset`` canvases of each split (quick runs).
    """
    if name not in PARETO_PAIRS:
        raise ValueError(
            f"unknown Pareto pair benchmark {name!r}; available: {sorted(PARETO_PAIRS)}"
        )
    root = resolve_data_dir(data_dir)
    left_src, right_src = PARETO_PAIRS[name]
    sources = {"mnist": _mnist_bytes, "fashion": _fashion_bytes}
    left = sources[left_src](root)
    right = left if right_src == left_src else sources[right_src](root)
    classes = {"mnist": DIGIT_CLASSES, "fashion": FASHION_MNIST_CLASSES}
    splits = {}
    for i, split in enumerate(SPLITS):
        xa, ya = left[split]
        xb, yb = right[split]
        if subset is not None:
            xa, ya = xa[:subset], ya[:subset]
            xb, yb = xb[:subset], yb[:subset]
        rng = np.random.default_rng((seed, i, 4))
        pick = _partners(len(xa), len(xb), right_src == left_src, rng)
        out = _overlay_in_order(xa, xb[pick], (seed, i))
        splits[split] = Split(
            x=_to_unit_float(out)[:, None], targets={"left": ya, "right": yb[pick]}
        )
    return OverlappingPairs(
        **splits, name=f"pareto-{name}", canvas=PARETO_CANVAS,
        class_names={"left": classes[left_src], "right": classes[right_src]},
    )


def _overlay_in_order(a: np.ndarray, b: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """``a[i]`` at the top-left and ``b[i]`` at the bottom-right, shifts up to 4."""
    n, h, w = a.shape
    off = PARETO_CANVAS - h
    rng = np.random.default_rng((*seed, 44))
    sa = rng.integers(0, PARETO_SHIFT + 1, size=(n, 2))
    sb = rng.integers(0, PARETO_SHIFT + 1, size=(n, 2))
    out = np.zeros((n, PARETO_CANVAS, PARETO_CANVAS), dtype=a.dtype)
    for dy in range(PARETO_SHIFT + 1):
        for dx in range(PARETO_SHIFT + 1):
            idx = np.flatnonzero((sa[:, 0] == dy) & (sa[:, 1] == dx))
            out[idx, dy : dy + h, dx : dx + w] = a[idx]
    for dy in range(PARETO_SHIFT + 1):
        for dx in range(PARETO_SHIFT + 1):
            idx = np.flatnonzero((sb[:, 0] == dy) & (sb[:, 1] == dx))
            y0, x0 = off - dy, off - dx
            region = out[idx, y0 : y0 + h, x0 : x0 + w]
            out[idx, y0 : y0 + h, x0 : x0 + w] = np.maximum(region, b[idx])
    return out
