"""The simplest loss weightings: equal and fixed user weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext, LossWeighting
from ..registry import register


@register("ew")
class EqualWeighting(LossWeighting):
    """Equal weighting: the plain sum of task losses (every weight 1).

    The baseline every MTL paper compares against. Extra cost per step: none.
    """

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        return torch.ones_like(losses)


@register("weighted")
class FixedWeighting(LossWeighting):
    """Fixed user weights: ``Σ_k w_k L_k``.

    Args:
        weights: ``{task: weight}`` (tasks left out get 1.0) or a sequence in task
            order.
        **task_weights: the same as keywords: ``FixedWeighting(income=2.0)``, or
            ``weighted:income=2.0`` on the command line.

    Extra cost per step: none.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "weights": [None, params.PerTask(params.Interval(params.Real, 0, None))],
        "**task_weights": [params.PerTask(params.Interval(params.Real, 0, None), scalar=True)],
    }

    def __init__(
        self, weights: Mapping[str, float] | Sequence[float] | None = None, **task_weights: float
    ) -> None:
        super().__init__()
        if weights is not None and task_weights:
            raise PolytaskError("give weights=... or task=weight keywords, not both")
        if task_weights:
            weights = task_weights
        if weights is not None and not isinstance(weights, (Mapping, Sequence)):
            raise PolytaskError(
                f"weights must be a dict {{task: weight}} or a list, got {weights!r}"
            )
        if isinstance(weights, str):
            raise PolytaskError(f"weights must be a dict or a list, got the string {weights!r}")
        self.user_weights = dict(weights) if isinstance(weights, Mapping) else weights

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        given = self.user_weights
        if given is None:
            return torch.ones_like(losses)
        if isinstance(given, Mapping):
            unknown = set(given) - set(ctx.names)
            if unknown:
                raise PolytaskError(
                    f"weights given for unknown tasks {sorted(unknown)}; tasks are {ctx.names}"
                )
            values = [float(given.get(name, 1.0)) for name in ctx.names]
        else:
            values = [float(v) for v in given]
            if len(values) != len(ctx.names):
                raise PolytaskError(
                    f"{len(values)} weights for {len(ctx.names)} tasks {ctx.names}"
                )
        return torch.tensor(values, dtype=losses.dtype, device=losses.device)
