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


def test_content_signature_follows_the_bytes_not_the_mtime(tmp_path):
    import os

    a = tmp_path / "a.csv"
    a.write_text("x,y\n1,2\n")
    sig = _cache.content_signature([a], "v1", 2)
    st = a.stat()
    a.write_text("x,y\n1,3\n")  # same size
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _cache.signature([a], "v1", 2) == _cache.signature([a], "v1", 2)
    assert _cache.content_signature([a], "v1", 2) != sig
    a.write_text("x,y\n1,2\n")
    assert _cache.content_signature([a], "v1", 2) == sig
    assert _cache.content_signature([a], "v1", 3) != sig  # a setting is part of the key
