"""Dynamic weight average (DWA)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext
from ..registry import register
from ._common import StatefulWeighting

UPDATES = ("epoch", "step")


def dwa_weights(previous: Tensor, before_previous: Tensor, temperature: float) -> Tensor:
    """DWA's rule: ``w_k = K · softmax_k(r / T)`` with ``r_k = L_k(t-1) / L_k(t-2)``."""
    ratio = previous / before_previous.clamp_min(torch.finfo(previous.dtype).tiny)
    return previous.numel() * torch.softmax(ratio / temperature, dim=0)


@register("dwa")
class DynamicWeightAverage(StatefulWeighting):
    """Dynamic weight average (Liu, Johns & Davison, CVPR 2019, "End-to-end
    multi-task learning with attention").

    ``w_k(t) = K exp(r_k(t-1)/T) / Σ_i exp(r_i(t-1)/T)`` with
    ``r_k(t-1) = L_k(t-1) / L_k(t-2)``, the ratio of task k's mean training loss over
    the last two epochs: a task whose loss fell less gets more weight. Weights are 1
    for the first two epochs. ``T`` (default 2, the paper's) softens the weights.

    Updated per epoch (``update="epoch"``, the paper's): the losses seen in ``backward``
    are averaged over the epoch and the weights change when ``on_epoch_end()`` is
    called (the Trainer calls it; in a plain loop call ``balancer.on_epoch_end()`` after
    each epoch). ``update="step"`` uses the last two steps' losses instead.

    Extra cost per step: none (2K numbers of state).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "temperature": [params.Interval(params.Real, 0, None, closed="neither")],
        "update": [params.Options(("epoch", "step"))],
    }


    def __init__(self, temperature: float = 2.0, update: str = "epoch") -> None:
        if update not in UPDATES:
            raise PolytaskError(f"DWA update must be one of {UPDATES}, got {update!r}")
        if temperature <= 0:
            raise PolytaskError(f"DWA temperature must be positive, got {temperature}")
        self.temperature = float(temperature)
        self.update = update
        self._sum: Tensor | None = None
        self._count = 0
        self._history: list[Tensor] = []
        self._current: Tensor | None = None
        super().__init__()

    def _push(self, mean_losses: Tensor) -> None:
        self._history = (self._history + [mean_losses.detach().clone()])[-2:]
        if len(self._history) == 2:
            self._current = dwa_weights(self._history[1], self._history[0], self.temperature)

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        w = torch.ones_like(losses) if self._current is None else self._current.to(losses)
        if self.update == "step":
            self._push(losses)
        else:
            self._sum = losses.clone() if self._sum is None else self._sum + losses
            self._count += 1
        return w

    def on_epoch_end(
        self, epoch: int | None = None, train_losses: Mapping[str, float] | None = None
    ) -> None:
        """Close an epoch: its mean losses enter the ratio (``update="epoch"``).

        The mean is taken over the losses this balancer saw; ``train_losses`` (what the
        Trainer passes) is accepted and not needed.
        """
        if self.update != "epoch" or self._sum is None or self._count == 0:
            return
        self._push(self._sum / self._count)
        self._sum, self._count = None, 0
