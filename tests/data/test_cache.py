"""The processed-data cache: a truncated or damaged file is rebuilt, not an error."""

import numpy as np

from polytask.data import _cache


def test_a_truncated_cache_reads_as_missing_and_is_rewritten(tmp_path):
    path = tmp_path / "c.npz"
    _cache.save(path, {"signature": np.array("s1"), "x": np.arange(1000)})
    assert _cache.load(path, "s1")["x"].sum() == 499500
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    assert _cache.load(path, "s1") is None  # BadZipFile before: now rebuilt by the caller
    path.write_bytes(b"not a zip at all")
    assert _cache.load(path, "s1") is None
    _cache.save(path, {"signature": np.array("s1"), "x": np.arange(3)})
    assert list(_cache.load(path, "s1")["x"]) == [0, 1, 2]
