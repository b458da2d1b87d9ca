"""Containers shared by the loaders: one split of arrays, and a train/val/test triple."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Split"]


@dataclass(frozen=True)
class Split:
    """One split of a data set: inputs ``x`` and one target array per task.

    Every array has the same first dimension (the number of samples).
    """

    x: np.ndarray
    targets: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        n = len(self.x)
        for name, y in self.targets.items():
            if len(y) != n:
                raise ValueError(
                    f"target {name!r} has {len(y)} samples but x has {n} (shape {self.x.shape})"
                )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def tasks(self) -> tuple[str, ...]:
        """The task names, in the order of ``targets``."""
        return tuple(self.targets)
