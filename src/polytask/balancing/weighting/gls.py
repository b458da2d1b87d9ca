"""Geometric loss strategy (GLS)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ..base import BalanceContext, LossWeighting
from ..registry import register


@register("gls")
class GeometricLossStrategy(LossWeighting):
    """Geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPR
    Workshops 2019, "MultiNet++").

    Minimises the geometric mean of the task losses, ``(Π_k L_k)^{1/K}``. Its gradient
    is ``Σ_k (L_geo / (K L_k)) ∇L_k``: the reported weights ``L_geo/(K L_k)``. Scaling
    one task's loss by a constant leaves the direction unchanged (only its length), so
    no task dominates by the scale of its loss.

    Extra cost per step: none. ``eps`` keeps the logarithm finite at a zero loss.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "eps": [params.Interval(params.Real, 0, None)],
    }

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = float(eps)

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        losses = torch.stack(ctx.losses)
        logs = torch.log(losses.clamp_min(self.eps))
        total = torch.exp(logs.mean())
        k = len(ctx.losses)
        w = total.detach() / (k * losses.detach().clamp_min(self.eps))
        return total, w
