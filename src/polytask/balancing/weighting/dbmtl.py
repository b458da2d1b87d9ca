"""Dual-balancing multi-task learning (DB-MTL)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from .. import scaling
from ..base import BalanceContext, BalanceResult, LossWeighting
from ..registry import register
from ._common import backward_shared_and_rest


@register("db-mtl")
class DBMTL(LossWeighting):
    """DB-MTL (Lin et al., 2023, "Dual-balancing for multi-task learning",
    arXiv:2308.12029).

    Loss-scale balancing: every task is trained on ``log(L_k + ε)``. Gradient-magnitude
    balancing: the per-task gradients ``g_k`` of the log-losses on the shared parameters
    are smoothed, ``ĝ_k ← g_k + β_t (ĝ_k − g_k)`` with ``β_t = β / t^σ``, and the shared
    update is ``Σ_k α_k ĝ_k`` with ``α_k = max_j ‖ĝ_j‖ / ‖ĝ_k‖``: every task's
    contribution is scaled to the largest gradient norm. Task-specific parameters get the
    gradient of ``Σ_k log L_k``. Defaults ``β = 0.9``, ``σ = 0`` follow the authors'
    LibMTL configuration.

    Reported weights: ``α_k`` (the factor on task k's smoothed log-loss gradient, so
    ``reports_loss_weights = False``: the update is not ``Σ α_k ∇L_k``). A dead task
    (loss exactly 0) keeps its smoothed gradient and drops out of that step's update.

    Extra cost per step: K backward passes over the shared parameters through the
    Jacobian engine, and K×P of state (the smoothed gradients).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "beta": [params.Interval(params.Real, 0, 1)],
        "beta_sigma": [params.Interval(params.Real, 0, None)],
        "eps": [params.Interval(params.Real, 0, None, closed="neither")],
        "strategy": [params.Options(("loop", "batched"))],
    }

    needs_shared_params = True
    reports_loss_weights = False

    def __init__(
        self, beta: float = 0.9, beta_sigma: float = 0.0, eps: float = 1e-8, strategy: str = "loop"
    ) -> None:
        super().__init__()
        self.beta = float(beta)
        self.beta_sigma = float(beta_sigma)
        self.eps = float(eps)
        self.strategy = strategy
        self.buffer: Tensor | None = None

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        # ∇ log(L_k + eps) = ∇L_k / (L_k + eps): the Jacobian of the losses (averaged
        # across ranks: the whole batch's) over the whole batch's losses, so that under
        # torch.distributed it is the log of the whole batch's loss that is differentiated
        denom = ctx.loss_values + self.eps
        jac = scaling.jacobian(ctx.losses, ctx.shared_params, self.strategy, True, reduce=True)
        jac = jac / denom.to(jac)[:, None]
        logs = [loss / d.to(loss) for loss, d in zip(ctx.losses, denom)]  # same gradient
        t = ctx.step + 1
        if self.buffer is None or self.buffer.shape != jac.shape:
            self.buffer = torch.zeros_like(jac)
        beta_t = self.beta / t**self.beta_sigma
        live = ctx.live.to(jac.device)
        smoothed = jac + beta_t * (self.buffer - jac)
        self.buffer = torch.where(live[:, None], smoothed, self.buffer)
        norms = self.buffer.norm(dim=1)
        alpha = (norms[live].max() if bool(live.any()) else norms.max()) / (norms + 1e-8)
        alpha = alpha.masked_fill(~live, 0.0)
        backward_shared_and_rest(ctx, alpha.to(self.buffer.dtype) @ self.buffer, sum(logs))
        extras = {f"grad_norm/{n}": float(v) for n, v in zip(ctx.names, norms)}
        return BalanceResult(dict(zip(ctx.names, alpha.tolist())), extras)
