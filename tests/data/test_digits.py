"""Overlapping-pair construction and the MNIST / Fashion-MNIST / 8x8-digits loaders."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from polytask.data import (
    DatasetNotFoundError,
    load_fashion_mnist,
    load_mnist,
    load_multidigits,
    load_multifashion,
    load_multifashion_mnist,
    load_multimnist,
    make_overlapping_pairs,
    read_idx,
)
from polytask.data import digits as dg

# ----------------------------------------------------------------------------- helpers


def random_bytes(rng: np.random.Generator, n: int, side: int = 28) -> np.ndarray:
    x = np.zeros((n, side, side), dtype=np.uint8)
    x[:, 4:-4, 4:-4] = rng.integers(1, 256, size=(n, side - 8, side - 8))
    return x


def write_mnist_pickle(root: Path, sizes=(12, 4, 5), seed: int = 0) -> dict:
    """The classic format: ((x, y), (x, y), (x, y)), x float32 (N, 784) = byte / 256."""
    rng = np.random.default_rng(seed)
    parts, raw = [], {}
    for split, n in zip(("train", "val", "test"), sizes):
        b = random_bytes(rng, n)
        y = rng.integers(0, 10, size=n).astype(np.int64)
        raw[split] = (b, y)
        parts.append(((b.reshape(n, 784) / np.float32(256)).astype(np.float32), y))
    (root / "mnist").mkdir(parents=True, exist_ok=True)
    with gzip.open(root / "mnist" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)
    return raw


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_fashion(folder: Path, n_train: int = 12, n_test: int = 6, gz: bool = True) -> dict:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    raw = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = random_bytes(rng, n)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        raw[prefix] = (x, y)
        for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                with gzip.open(folder / f"{name}.gz", "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
    return raw


@pytest.fixture(autouse=True)
def no_system_fashion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read a Fashion-MNIST installed on the machine running the tests."""
    monkeypatch.setattr(dg, "SYSTEM_FASHION_DIR", tmp_path / "no-system-dir")


# --------------------------------------------------------------- overlap construction


def test_left_image_only_top_left_right_only_bottom_right() -> None:
    full = np.full((40, 28, 28), 255, dtype=np.uint8)
    zeros = np.zeros_like(full)
    labels = np.arange(40)
    x, _, _ = make_overlapping_pairs(full, labels, zeros, labels, canvas=36, seed=3)
    assert x.shape == (40, 1, 36, 36) and x.dtype == np.float32
    # the left image (28x28, shifted right/down by <= 2) covers rows/cols 2..27 and
    # never reaches rows/cols 30..35
    assert np.all(x[:, :, 30:, :] == 0) and np.all(x[:, :, :, 30:] == 0)
    assert np.all(x[:, :, 2:28, 2:28] == 1.0)
    x, _, _ = make_overlapping_pairs(zeros, labels, full, labels, canvas=36, seed=3)
    # the right image sits at offset 8, moved up/left by <= 2: rows/cols 6..35
    assert np.all(x[:, :, :6, :] == 0) and np.all(x[:, :, :, :6] == 0)
    assert np.all(x[:, :, 8:34, 8:34] == 1.0)


def test_pixelwise_max_and_uint8_scale() -> None:
    a = np.full((5, 28, 28), 77, dtype=np.uint8)
    b = np.full((5, 28, 28), 200, dtype=np.uint8)
    x, _, _ = make_overlapping_pairs(a, np.zeros(5), b, np.zeros(5), canvas=36, seed=0)
    values = set(np.unique(x).tolist())
    assert values <= {0.0, np.float32(77) / 255, np.float32(200) / 255}
    assert x[:, 0, 12:24, 12:24].min() == np.float32(200) / 255  # overlap: the max
    assert x[:, 0, 2, 2].min() == np.float32(77) / 255  # left only, whatever the shift


def test_shifts_cover_zero_to_max_shift() -> None:
    a = np.zeros((400, 28, 28), dtype=np.float32)
    a[:, 0, 0] = 1.0  # a single pixel at the top-left corner
    b = np.zeros_like(a)
    b[:, -1, -1] = 0.5  # and one at the bottom-right corner
    x, _, _ = make_overlapping_pairs(a, np.zeros(400), b, np.zeros(400), 36, seed=1)
    pos_a = {tuple(np.argwhere(img[0] == 1.0)[0]) for img in x}
    pos_b = {tuple(np.argwhere(img[0] == 0.5)[0]) for img in x}
    assert pos_a == {(i, j) for i in range(3) for j in range(3)}
    assert pos_b == {(35 - i, 35 - j) for i in range(3) for j in range(3)}
    x, _, _ = make_overlapping_pairs(a, np.zeros(400), b, np.zeros(400), 36, 1, max_shift=0)
    assert np.all(x[:, 0, 0, 0] == 1.0) and np.all(x[:, 0, 35, 35] == 0.5)


def test_labels_follow_the_chosen_images() -> None:
    n_b = 30
    b = np.zeros((n_b, 8, 8), dtype=np.uint8)
    b[:, 3:5, 3:5] = np.arange(1, n_b + 1, dtype=np.uint8)[:, None, None]  # image id
    labels_b = np.arange(n_b) % 7
    a = np.zeros((50, 8, 8), dtype=np.uint8)
    labels_a = np.arange(50) % 10
    x, left, right = make_overlapping_pairs(a, labels_a, b, labels_b, canvas=12, seed=5)
    assert left.dtype == np.int64 and right.dtype == np.int64
    np.testing.assert_array_equal(left, labels_a)
    ids = np.rint(x.reshape(50, -1).max(1) * 255).astype(int) - 1
    np.testing.assert_array_equal(right, labels_b[ids])
    assert len(set(ids.tolist())) > 10  # partners are drawn at random


def test_deterministic_per_seed() -> None:
    rng = np.random.default_rng(2)
    a, b = random_bytes(rng, 20), random_bytes(rng, 20)
    ya, yb = np.arange(20), np.arange(20)
    one = make_overlapping_pairs(a, ya, b, yb, 36, seed=7)
    two = make_overlapping_pairs(a, ya, b, yb, 36, seed=7)
    other = make_overlapping_pairs(a, ya, b, yb, 36, seed=8)
    for u, v in zip(one, two):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(one[0], other[0])


def test_float_uint8_and_channel_inputs_agree() -> None:
    rng = np.random.default_rng(3)
    a, b = random_bytes(rng, 10), random_bytes(rng, 10)
    y = np.arange(10)
    ref = make_overlapping_pairs(a, y, b, y, 36, 0)[0]
    fa, fb = a.astype(np.float32) / 255, b.astype(np.float32) / 255
    np.testing.assert_array_equal(make_overlapping_pairs(fa, y, fb, y, 36, 0)[0], ref)
    np.testing.assert_array_equal(make_overlapping_pairs(a[:, None], y, fb, y, 36, 0)[0], ref)


def test_overlap_input_errors() -> None:
    a = np.zeros((4, 28, 28), dtype=np.float32)
    y = np.zeros(4)
    with pytest.raises(ValueError, match="canvas 20 is smaller"):
        make_overlapping_pairs(a, y, a, y, canvas=20, seed=0)
    with pytest.raises(ValueError, match="labels_a has 3 entries"):
        make_overlapping_pairs(a, y[:3], a, y, canvas=36, seed=0)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        make_overlapping_pairs(a + 2, y, a, y, canvas=36, seed=0)
    with pytest.raises(ValueError, match="shape"):
        make_overlapping_pairs(a[0], y, a, y, canvas=36, seed=0)
    with pytest.raises(ValueError, match="max_shift"):
        make_overlapping_pairs(a, y, a, y, canvas=30, seed=0, max_shift=3)
    with pytest.raises(ValueError, match="uint8"):
        make_overlapping_pairs(a.astype(np.int64), y, a, y, canvas=36, seed=0)


# ------------------------------------------------------------------------------ MNIST


def test_load_mnist_pickle(tmp_path: Path) -> None:
    raw = write_mnist_pickle(tmp_path)
    m = load_mnist(tmp_path)
    assert set(m) == {"train", "val", "test"}
    for split, n in (("train", 12), ("val", 4), ("test", 5)):
        x, y = m[split]
        assert x.shape == (n, 28, 28) and x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, raw[split][0].astype(np.float32) / 255)
        np.testing.assert_array_equal(y, raw[split][1])


def test_load_mnist_rejects_a_wrong_pickle(tmp_path: Path) -> None:
    (tmp_path / "mnist").mkdir()
    with gzip.open(tmp_path / "mnist" / "mnist.pkl.gz", "wb") as f:
        pickle.dump({"x": 1}, f)
    with pytest.raises(ValueError, match="pickled"):
        load_mnist(tmp_path)


def test_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(tmp_path)
    assert "mnist.pkl.gz" in str(err.value) and "polytask data get mnist" in str(err.value)
    with pytest.raises(DatasetNotFoundError, match="polytask data get mnist"):
        load_multimnist(tmp_path)


def test_load_multimnist_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = write_mnist_pickle(tmp_path)
    d = load_multimnist(tmp_path, seed=0)
    assert d.name == "multimnist" and d.canvas == 36 and d.tasks == ("left", "right")
    assert d.num_classes == {"left": 10, "right": 10}
    for split, n in (("train", 12), ("val", 4), ("test", 5)):
        s = getattr(d, split)
        assert s.x.shape == (n, 1, 36, 36) and s.x.dtype == np.float32
        np.testing.assert_array_equal(s.targets["left"], raw[split][1])
        assert s.targets["right"].dtype == np.int64
        assert set(s.targets["right"].tolist()) <= set(raw[split][1].tolist())
    # same as building the pairs by hand from load_mnist with the split's seed
    m = load_mnist(tmp_path)
    x, left, right = make_overlapping_pairs(*m["val"], *m["val"], 36, (0, 1))
    np.testing.assert_array_equal(d.val.x, x)
    np.testing.assert_array_equal(d.val.targets["right"], right)
    assert (tmp_path / "multimnist" / "multimnist_seed0.npz").is_file()

    def boom(root: Path) -> None:
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(dg, "_mnist_bytes", boom)
    again = load_multimnist(tmp_path, seed=0)
    np.testing.assert_array_equal(again.train.x, d.train.x)
    np.testing.assert_array_equal(again.test.targets["right"], d.test.targets["right"])
    monkeypatch.undo()
    other = load_multimnist(tmp_path, seed=1, cache=False)
    assert not np.array_equal(other.train.x, d.train.x)
    assert not (tmp_path / "multimnist" / "multimnist_seed1.npz").exists()


# ---------------------------------------------------------------------- Fashion-MNIST


def test_read_idx(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    ints = np.array([1, -2, 300000], dtype=np.int32)
    with gzip.open(tmp_path / "b.gz", "wb") as f:
        f.write(idx_bytes(ints, code=0x0C))
    out = read_idx(tmp_path / "b.gz")
    np.testing.assert_array_equal(out, ints)
    assert out.dtype.isnative
    (tmp_path / "bad").write_bytes(b"\x1f\x8b\x08\x03" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(arr)[:-5])
    with pytest.raises(ValueError, match=r"dims \(2, 3, 4\) need 24 data bytes, file has 19"):
        read_idx(tmp_path / "short")


def test_load_fashion_mnist(tmp_path: Path) -> None:
    raw = write_fashion(tmp_path / "fashion-mnist")
    f = load_fashion_mnist(tmp_path)
    x_train, y_train = raw["train"]
    assert f["train"][0].shape == (10, 28, 28) and f["val"][0].shape == (2, 28, 28)
    np.testing.assert_array_equal(f["train"][0], x_train[:10] / np.float32(255))
    np.testing.assert_array_equal(f["val"][1], y_train[10:])
    np.testing.assert_array_equal(f["test"][1], raw["t10k"][1])
    assert f["test"][0].dtype == np.float32 and f["test"][1].dtype == np.int64


def test_fashion_uncompressed_and_system_dir(tmp_path: Path, monkeypatch) -> None:
    system = tmp_path / "usr-share"
    raw = write_fashion(system, gz=False)
    monkeypatch.setattr(dg, "SYSTEM_FASHION_DIR", system)
    f = load_fashion_mnist(tmp_path / "empty")
    np.testing.assert_array_equal(f["test"][1], raw["t10k"][1])


def test_fashion_missing_names_both_places(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as err:
        load_fashion_mnist(tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "polytask data get fashion-mnist" in msg
    assert str(tmp_path / "fashion-mnist") in msg and "no-system-dir" in msg
    # a partial copy is named precisely
    write_fashion(tmp_path / "fashion-mnist")
    (tmp_path / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_multifashion(tmp_path)


def test_multifashion_and_multifashion_mnist(tmp_path: Path) -> None:
    write_fashion(tmp_path / "fashion-mnist")
    mnist = write_mnist_pickle(tmp_path, sizes=(10, 2, 6))
    mf = load_multifashion(tmp_path, seed=0)
    assert mf.train.x.shape == (10, 1, 36, 36) and mf.test.x.shape == (6, 1, 36, 36)
    assert mf.class_names["left"][9] == "Ankle boot"
    fm = load_multifashion_mnist(tmp_path, seed=0)
    assert fm.num_classes == {"left": 10, "right": 10}
    np.testing.assert_array_equal(fm.train.targets["left"], mnist["train"][1])
    f = load_fashion_mnist(tmp_path)
    m = load_mnist(tmp_path)
    x, _, right = make_overlapping_pairs(*m["test"], *f["test"], 36, (0, 2))
    np.testing.assert_array_equal(fm.test.x, x)
    np.testing.assert_array_equal(fm.test.targets["right"], right)
    assert (tmp_path / "multifashion-mnist" / "multifashion-mnist_seed0.npz").is_file()


# -------------------------------------------------------------------------- 8x8 digits


def test_load_multidigits() -> None:
    d = load_multidigits(seed=0)
    assert d.canvas == 12
    assert (len(d.train), len(d.val), len(d.test)) == (1078, 359, 360)
    for s in (d.train, d.val, d.test):
        assert s.x.shape[1:] == (1, 12, 12) and s.x.dtype == np.float32
        assert 0.0 <= s.x.min() and s.x.max() <= 1.0
        assert s.targets["left"].dtype == np.int64
    again = load_multidigits(seed=0)
    np.testing.assert_array_equal(again.train.x, d.train.x)
    other = load_multidigits(seed=1)
    np.testing.assert_array_equal(other.train.targets["left"], d.train.targets["left"])
    assert not np.array_equal(other.train.x, d.train.x)
