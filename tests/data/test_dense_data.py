"""NYUv2/Cityscapes readers on small files written in the MTAN/LibMTL .npy layout."""

import numpy as np
import pytest
import torch
from _dense_layout import write_nyuv2

from polytask.data import (
    DatasetNotFoundError,
    augment_batch,
    load_cityscapes,
    load_nyuv2,
    make_dense_multimnist,
)
from polytask.errors import PolytaskError, ShapeMismatchError


def test_nyuv2_reads_the_layout(tmp_path):
    root = write_nyuv2(tmp_path)
    data = load_nyuv2(root)
    assert data.train.x.shape == (3, 3, 8, 12) and len(data.val) == 2
    t = data.train.targets
    assert t["segmentation"].dtype == np.int64 and t["segmentation"].shape == (3, 8, 12)
    assert t["depth"].shape == (3, 1, 8, 12) and t["normal"].shape == (3, 3, 8, 12)
    image0 = np.load(root / "train" / "image" / "0.npy")
    assert np.array_equal(data.train.x[0], np.moveaxis(image0, -1, 0))
    label1 = np.load(root / "val" / "label" / "1.npy")
    assert np.array_equal(data.val.targets["segmentation"][1], label1.astype(np.int64))


def test_missing_index_is_named(tmp_path):
    root = write_nyuv2(tmp_path, n_train=4)
    (root / "train" / "depth" / "2.npy").unlink()
    with pytest.raises(PolytaskError, match=r"depth/2\.npy.*first missing index 2"):
        load_nyuv2(root)
    (root / "train" / "image" / "1.npy").unlink()
    with pytest.raises(PolytaskError, match="index 1 is missing"):
        load_nyuv2(root)


def test_mismatched_file_is_named(tmp_path):
    root = write_nyuv2(tmp_path)
    np.save(root / "val" / "normal" / "1.npy", np.zeros((8, 10, 3), np.float32))
    with pytest.raises(ShapeMismatchError, match=r"val/normal/1\.npy.*\(8, 10, 3\).*8×12"):
        load_nyuv2(root)


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="NYUv2"):
        load_nyuv2(tmp_path)
    root = write_nyuv2(tmp_path)
    import shutil

    shutil.rmtree(root / "train" / "normal")
    with pytest.raises(DatasetNotFoundError, match="normal"):
        load_nyuv2(root)


def test_cityscapes_prefers_label_folder_by_class_count(tmp_path):
    root = write_nyuv2(tmp_path, classes=7)
    for split in ("train", "val"):
        (root / split / "label").rename(root / split / "label_7")
    data = load_cityscapes(root, 7)
    assert set(data.train.targets) == {"segmentation", "depth"}
    with pytest.raises(DatasetNotFoundError, match="label"):
        load_cityscapes(root, 19)  # no label_19/ and no label/


def test_augmentation_keeps_the_protocol_invariants(tmp_path):
    data = load_nyuv2(write_nyuv2(tmp_path, n_train=4, h=16, w=24))
    x = torch.as_tensor(data.train.x)
    targets = {k: torch.as_tensor(v) for k, v in data.train.targets.items()}
    import random

    rng = random.Random(3)
    ax, at = augment_batch(x, targets, rng=rng)
    assert ax.shape == x.shape and at["segmentation"].dtype == torch.long
    normal = at["normal"]
    norms = normal.norm(dim=1)
    valid = (normal != 0).any(1)
    assert torch.allclose(norms[valid], torch.ones_like(norms[valid]), atol=1e-5)
    classes = set(targets["segmentation"].unique().tolist())
    assert set(at["segmentation"].unique().tolist()) <= classes
    # scale 1, flip: labels mirrored, normals' x negated
    fx, ft = augment_batch(x, targets, scales=(1.0,), rng=_AlwaysFlip())
    assert torch.equal(ft["segmentation"], targets["segmentation"].flip(-1))
    assert torch.allclose(ft["normal"][:, 0], -targets["normal"][:, 0].flip(-1), atol=1e-6)
    # scale 2: depth divided by the scale
    _, dt = augment_batch(x, targets, scales=(2.0,), flip=False, rng=random.Random(0))
    source = set(np.round(targets["depth"].numpy().ravel() / 2, 5))
    assert set(np.round(dt["depth"].numpy().ravel(), 5)) <= source


class _AlwaysFlip:
    def randrange(self, n):
        return 0

    def randint(self, a, b):
        return a

    def random(self):
        return 0.0


def test_dense_multimnist_construction():
    rng = np.random.default_rng(0)
    images = (rng.random((20, 28, 28)) > 0.8).astype(np.float32)
    labels = rng.integers(0, 10, size=20)
    split = make_dense_multimnist(images, labels, seed=1)
    x, t = split.x, split.targets
    assert x.shape == (20, 1, 36, 36) and t["segmentation"].shape == (20, 36, 36)
    seg, depth, normal = t["segmentation"], t["depth"][:, 0], t["normal"]
    assert set(np.unique(seg)) <= {-1, 0, 1, 2}
    # background pixels: class 0, no depth; digit pixels: depth 1 (front) or in [1.5, 3]
    assert np.all(depth[seg == 0] == 0)
    d = depth[seg > 0]
    assert np.all((d == 1) | ((d >= 1.5) & (d <= 3)))
    norms = np.linalg.norm(normal, axis=1)
    assert np.allclose(norms[norms > 0], 1, atol=1e-5)
    assert np.array_equal(split.x, make_dense_multimnist(images, labels, seed=1).x)
    digit = make_dense_multimnist(images, labels, seed=1, classes=11).targets["segmentation"]
    assert digit.max() <= 10 and np.array_equal(digit == 0, seg == 0)
