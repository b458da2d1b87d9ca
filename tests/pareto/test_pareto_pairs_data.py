"""The Pareto-MTL construction of MultiMNIST from a small MNIST pickle in the real format."""

import gzip
import pickle

import numpy as np
import pytest

from polytask import benchmarks
from polytask.data.pareto_pairs import PARETO_SHIFT, load_pareto_pairs


def _write_mnist(root, sizes=(20, 6, 6)):
    rng = np.random.default_rng(0)
    parts = []
    for n in sizes:
        # each image: a bright 4x4 block at a label-dependent place, byte/256 encoded
        y = rng.integers(0, 10, n)
        x = np.zeros((n, 28, 28), np.uint8)
        for i, label in enumerate(y):
            x[i, 10 + label % 5 : 14 + label % 5, 10:14] = 200 + i % 50
        parts.append(((x.reshape(n, 784) / 256).astype(np.float32), y.astype(np.int64)))
    (root / "mnist").mkdir(parents=True)
    with gzip.open(root / "mnist" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f)


def test_pareto_multimnist_construction(tmp_path):
    _write_mnist(tmp_path)
    a = load_pareto_pairs("multimnist", tmp_path, seed=1)
    b = load_pareto_pairs("multimnist", tmp_path, seed=1)
    c = load_pareto_pairs("multimnist", tmp_path, seed=2)
    assert a.train.x.shape == (20, 1, 36, 36) and a.test.x.shape == (6, 1, 36, 36)
    np.testing.assert_array_equal(a.train.x, b.train.x)  # deterministic
    assert not np.array_equal(a.train.x, c.train.x)
    # the left image is at the top-left, moved by at most 4 pixels: rows/cols >= 32 hold only
    # the right image; the right item at the bottom-right never reaches rows/cols < 4
    src = pickle.load(gzip.open(tmp_path / "mnist" / "mnist.pkl.gz"), encoding="latin1")
    left_imgs = np.round(src[0][0].reshape(-1, 28, 28) * 256) / 255
    for i in range(20):
        canvas = a.train.x[i, 0]
        found = [
            (dy, dx) for dy in range(PARETO_SHIFT + 1) for dx in range(PARETO_SHIFT + 1)
            if np.all(canvas[dy:dy + 28, dx:dx + 28] >= left_imgs[i] - 1e-6)
        ]
        assert found, f"left image {i} is not within a shift of {PARETO_SHIFT}"
    np.testing.assert_array_equal(a.train.targets["left"], src[0][1])
    assert a.name == "pareto-multimnist" and a.canvas == 36


def test_pareto_benchmarks_are_registered_with_the_reference_point():
    b = benchmarks.get("pareto-multimnist")
    assert b.options["pareto_ref"] == (2.0, 2.0)
    assert "pareto-multifashion-mnist" in benchmarks.available()
    with pytest.raises(ValueError, match="unknown Pareto pair"):
        load_pareto_pairs("cifar")
