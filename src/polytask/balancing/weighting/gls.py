"""Geometric loss strategy (GLS)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ..base import BalanceContext, LossWeighting, surrogate
from ..registry import register


@register("gls")
class GeometricLossStrategy(LossWeighting):
    """Geometric loss strategy (Chennupati, Sistu, Yogamani & Rawashdeh, CVPR
    Workshops 2019, "MultiNet++").

    Minimises the geometric mean of the task losses, ``(Π_k L_k)^{1/K}``. Its gradient
    is ``Σ_k (L_geo / (K L_k)) ∇L_k``: the reported weights ``L_geo/(K L_k)``. Scaling
    one task's loss by a constant leaves the direction unchanged (only its length), so
    no task dominates by the scale of its loss.

    Extra cost per step: none. A task whose loss is exactly 0 at a step (no label in
    the batch) is left out of that step's geometric mean (weight 0): a zero factor
    would make the product, and so every task's weight, vanish. ``eps`` keeps the
    logarithm finite for losses that are positive but tiny. The weights are computed
    from the engine's loss values, so under ``torch.distributed`` they are the whole
    batch's, and the backward is ``Σ_k w_k L_k`` (the same gradient in one process).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "eps": [params.Interval(params.Real, 0, None)],
    }

    def __init__(self, eps: float = 1e-12) -> None:
        super().__init__()
        self.eps = float(eps)

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        live = ctx.live.to(ctx.losses[0].device)
        losses = torch.stack(ctx.losses)
        if not bool(live.any()):
            return (losses * 0).sum(), torch.zeros_like(losses.detach())
        # the weights from the engine's loss values (under torch.distributed the whole
        # batch's), then Σ w_k L_k: the geometric mean's gradient at those values
        values = ctx.loss_values.to(losses)[live].clamp_min(self.eps)
        geo = torch.exp(torch.log(values).mean())
        w = torch.zeros_like(losses.detach())
        w[live] = geo / (values.numel() * values)
        return surrogate(losses, w, geo), w
