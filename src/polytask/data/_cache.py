"""Small .npz cache of processed arrays, invalidated when the raw files change."""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
import zipfile
from pathlib import Path

import numpy as np


def signature(paths: list[Path], *extra: object) -> str:
    """A string that changes when any raw file (size, mtime) or an extra key changes."""
    parts = [str(e) for e in extra]
    for p in paths:
        st = p.stat()
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return "|".join(parts)


def content_signature(paths: list[Path], *extra: object) -> str:
    """A SHA-256 hex digest of the raw files' bytes and the ``extra`` keys, in order.

    Unlike :func:`signature`, it cannot miss an edit that keeps a file's size and mtime
    (a copy with ``cp -p``, an ``rsync`` of the same size, a clock that went back). The
    cost is one read of the files (milliseconds for a few MB)."""
    h = hashlib.sha256()
    for e in extra:
        h.update(repr(e).encode())
        h.update(b"\0")
    for p in paths:
        h.update(p.name.encode())
        h.update(b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def temp_sibling(path: Path) -> Path:
    """A fresh name next to ``path`` for writing it atomically (write, then os.replace)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.part")


def save(path: Path, arrays: dict[str, np.ndarray], *, compress: bool = False) -> None:
    """Write ``arrays`` to ``path`` atomically; warn (don't fail) if it can't be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(path)
        try:
            with open(tmp, "xb") as f:  # unlike mkstemp, respects the umask
                (np.savez_compressed if compress else np.savez)(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as e:
        warnings.warn(f"polytask: could not write cache {path}: {e}", stacklevel=3)


def load(path: Path, sig: str) -> dict[str, np.ndarray] | None:
    """Read the arrays cached at ``path`` if its signature is ``sig``, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if "signature" not in z.files or str(z["signature"]) != sig:
                return None
            return {k: z[k] for k in z.files if k != "signature"}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):
        return None  # truncated or damaged: the caller rebuilds it
