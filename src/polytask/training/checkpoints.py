"""Run directories and checkpoint files: no silent overwrite, atomic writes, clear errors.

A checkpoint holds tensors and plain Python data only (no pickled objects), so
``torch.load(path, weights_only=True)`` reads it; it is written to a temporary file
unique to the process and renamed into place, so a crash or a second process never
leaves a half-written ``last.pt``.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..atomic import torch_save
from ..errors import CheckpointError

#: the files a finished or interrupted run leaves in its log_dir
RUN_FILES = ("last.pt", "best.pt", "steps.csv", "epochs.csv")


def existing_run_files(log_dir: Path) -> list[str]:
    """The run files already present in ``log_dir``."""
    return [name for name in RUN_FILES if (log_dir / name).exists()]


def prepare_run_dir(log_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Check ``log_dir`` before a fit: raise rather than overwrite an earlier run.

    - ``resume=True``: ``last.pt`` must exist (else the error names it);
    - ``overwrite=True``: the earlier run's files are removed;
    - neither, and the directory holds a run: raise naming it and the choices.
    """
    if resume and overwrite:
        raise CheckpointError("give resume=True or overwrite=True, not both")
    found = existing_run_files(log_dir)
    if resume:
        if not (log_dir / "last.pt").exists():
            raise CheckpointError(
                f"resume=True but there is no checkpoint {log_dir / 'last.pt'} to resume "
                "from; train with resume=False (and overwrite=True if the directory holds "
                "other files of a run)"
            )
        return
    if not found:
        return
    if not overwrite:
        raise CheckpointError(
            f"{log_dir} already holds a run ({', '.join(found)}); pass resume=True to "
            "continue it, overwrite=True to replace it, or another log_dir"
        )
    for name in found:
        (log_dir / name).unlink(missing_ok=True)


def save_checkpoint_file(state: dict[str, Any], path: str | Path) -> None:
    """Write ``state`` to ``path`` atomically; an error names the file."""
    try:
        torch_save(state, path)
    except OSError as error:
        raise CheckpointError(f"could not write checkpoint {path}: {error}") from error


def load_checkpoint_file(path: str | Path, device: torch.device | str | None = None) -> dict:
    """Read a checkpoint with ``weights_only=True``; a missing, truncated or foreign
    file raises :class:`~polytask.errors.CheckpointError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError,
            ValueError) as error:
        raise CheckpointError(
            f"cannot read checkpoint {path} ({path.stat().st_size} bytes): it is truncated, "
            f"damaged or not a polytask checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a polytask checkpoint (no 'model' entry)")
    return state
