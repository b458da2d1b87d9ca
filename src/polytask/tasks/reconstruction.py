"""Predicting the input as an auxiliary task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from torch import Tensor

from .base import Regression


@dataclass(frozen=True, eq=False)
class Reconstruction(Regression):
    """Reconstruct the (flattened) input: a regression of ``dim`` values per sample,
    auxiliary by default (trained, left out of Δm and model selection).

    An input-prediction (auto-encoding) auxiliary task pushes the shared layers to keep
    the information in the input. Its target is the input itself: add it to the
    targets with :func:`add_input_target`. Loss: MSE
    (or ``loss_type``) over every input value; missing entries NaN as for Regression.
    """

    auxiliary: bool = field(default=True, kw_only=True)
    kind = "reconstruction"


def add_input_target(
    inputs: Tensor, targets: Mapping[str, Tensor], name: str = "reconstruction"
) -> dict[str, Tensor]:
    """``targets`` plus ``{name: inputs flattened per sample}`` for a Reconstruction task."""
    out = dict(targets)
    out[name] = inputs.reshape(inputs.shape[0], -1)
    return out
