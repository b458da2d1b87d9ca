"""A regression task trained on standardised targets, reported in original units."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import Regression


@dataclass(frozen=True, eq=False)
class StandardizedRegression(Regression):
    """Regression whose head predicts the standardised target ``(y - mean) / std``.

    The loss compares the head's output with the standardised target, so tasks whose
    targets live on very different scales (QM9's twelve properties, MoleculeACE's
    thirty assays) enter a multi-task loss on one scale; :meth:`predict` maps the
    output back (``output * std + mean``), so MAE and RMSE are in the target's own
    units. ``mean`` and ``std`` come from the training split (the benchmark modules
    compute them); missing labels are NaN, as for :class:`Regression`.
    """

    mean: float = 0.0
    std: float = 1.0
    kind = "regression"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(
                f"task {self.name!r}: standardisation needs a finite mean and a positive std, "
                f"got mean={self.mean!r}, std={self.std!r}"
            )

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return super()._elementwise_loss(output, (target - self.mean) / self.std)

    def predict(self, output: Tensor) -> Tensor:
        return output * self.std + self.mean

    def standardize(self, target: Tensor) -> Tensor:
        """``(target - mean) / std``: the values the head is trained to output."""
        return (torch.as_tensor(target) - self.mean) / self.std
