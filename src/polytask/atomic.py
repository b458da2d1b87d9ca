"""Atomic file writes: a file is either the old one or the new one, never half written.

Each write goes to a temporary sibling whose name is unique per process and per call
(so two processes writing the same directory never share a temporary file), then
replaces the target with ``os.replace``. A failure removes the temporary file and
raises naming the target.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["temp_sibling", "write_atomic", "write_text", "torch_save"]


def temp_sibling(path: str | Path) -> Path:
    """A fresh hidden name next to ``path``: ``.NAME.<pid>.<random>.part``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.part")


def write_atomic(path: str | Path, write: Callable[[IO[Any]], None], binary: bool = True) -> None:
    """Call ``write(file)`` on a temporary sibling of ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        with open(tmp, "xb" if binary else "x", **({} if binary else {"newline": ""})) as f:
            write(f)  # no fsync: atomic against crashes and other processes, and fast
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and str(path) not in str(error):
            raise OSError(error.errno, f"could not write {path}: {error.strerror or error}") \
                from error
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    write_atomic(path, lambda f: f.write(text), binary=False)


def torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)``, atomically."""
    import torch

    write_atomic(path, lambda f: torch.save(obj, f))
