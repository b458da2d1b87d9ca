"""Excess-risk weighting (ExcessMTL)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from .. import scaling
from ..base import BalanceContext, BalanceResult, LossWeighting
from ..registry import register
from ._common import backward_shared_and_rest


@register("excess-mtl")
class ExcessMTL(LossWeighting):
    """ExcessMTL (He et al., ICML 2024, "Robust multi-task learning
    with excess risks").

    Weights follow each task's estimated *excess* risk (distance to its own optimum)
    rather than its loss, so a task with high irreducible noise does not take over.
    With ``g_k`` the task's gradient on the shared parameters and ``H_k`` the diagonal
    AdaGrad-style curvature estimate ``sqrt(Σ_steps g_k² + 1e-7)``, the excess risk is
    ``e_k = g_kᵀ H_k⁻¹ g_k`` (a second-order Taylor bound), taken relative to its first
    value; the weights take an exponentiated-gradient step
    ``w_k ← w_k exp(η e_k / e_k(0))`` and are renormalised to sum K. ``η = 0.01``
    (``step_size``) follows the authors' code.

    Extra cost per step: K backward passes over the shared parameters (Jacobian
    engine) and K×P of state (the accumulated squared gradients).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "step_size": [params.Interval(params.Real, 0, None, closed="neither")],
        "strategy": [params.Options(("loop", "batched"))],
    }

    needs_shared_params = True

    def __init__(self, step_size: float = 1e-2, strategy: str = "loop") -> None:
        super().__init__()
        self.step_size = float(step_size)
        self.strategy = strategy
        self.grad_sq: Tensor | None = None
        self.initial: Tensor | None = None
        self.loss_weights: Tensor | None = None

    def excess_risks(self, jac: Tensor) -> Tensor:
        """Accumulate ``g²`` and return ``e_k = g_kᵀ H_k⁻¹ g_k`` for the K×P Jacobian."""
        if self.grad_sq is None or self.grad_sq.shape != jac.shape:
            self.grad_sq = torch.zeros_like(jac)
        self.grad_sq = self.grad_sq + jac * jac
        h = torch.sqrt(self.grad_sq + 1e-7)
        return (jac * jac / h).sum(dim=1)

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        jac = scaling.jacobian(ctx.losses, ctx.shared_params, self.strategy, True, reduce=True)
        k = len(ctx.losses)
        if self.loss_weights is None:
            self.loss_weights = torch.ones(k, dtype=jac.dtype, device=jac.device)
        risks = self.excess_risks(jac)
        if self.initial is None:
            self.initial = risks.clone()
        else:
            ratio = risks / self.initial.clamp_min(torch.finfo(risks.dtype).tiny)
            w = self.loss_weights * torch.exp(self.step_size * ratio)
            self.loss_weights = k * w / w.sum()
        w = self.loss_weights
        rest = sum(wk * loss for wk, loss in zip(w, ctx.losses))
        backward_shared_and_rest(ctx, w @ jac, rest)
        extras = {f"excess/{n}": float(v) for n, v in zip(ctx.names, risks)}
        return BalanceResult(dict(zip(ctx.names, w.tolist())), extras)
