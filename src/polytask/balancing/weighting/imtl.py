"""Impartial multi-task learning: IMTL-L (loss scales) and the hybrid IMTL (IMTL-L +
IMTL-G, whose rule lives in ``aggregation/imtl.py``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from .. import scaling
from ..aggregation.imtl import IMTLG
from ..base import BalanceContext, BalanceResult, check_representation_reached
from ..registry import register
from ._common import StatefulWeighting, non_shared_parameters

PATHS = ("parameters", "representation")


def imtl_g_weights(gramian: Tensor) -> Tensor:
    """IMTL-G's weights ``α`` (summing to 1) from the K×K Gramian ``G = J Jᵀ``: the
    combination ``Σ_k α_k g_k`` projects equally on every unit task gradient (Liu et al.,
    ICLR 2021). The rule is :class:`polytask.balancing.aggregation.imtl.IMTLG`'s (one
    implementation for ``imtl-g`` and the hybrid ``imtl``)."""
    return _IMTL_G.weights_from_gramian(gramian).to(gramian.dtype)


_IMTL_G = IMTLG()


class _LossScales(StatefulWeighting):
    """Learned loss scales ``s_k`` of IMTL-L (shared by ``imtl-l`` and ``imtl``)."""

    _has_parameters = True

    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        self.log_scales = nn.Parameter(torch.zeros(k, device=device, dtype=dtype))

    def _scale_objective(self, losses: Tensor) -> Tensor:
        """``Σ_k e^{s_k} L_k − s_k`` with the losses detached: trains ``s`` only."""
        s = self.log_scales
        return (torch.exp(s) * losses.detach() - s).sum()


@register("imtl-l")
class IMTLL(_LossScales):
    """IMTL-L, the loss-balancing half of impartial multi-task learning (Liu et al.,
    ICLR 2021, "Towards impartial multi-task learning").

    Each loss is scaled as ``e^{s_k} L_k − s_k`` with learned ``s_k``; minimising over
    ``s_k`` gives ``e^{s_k} = 1/L_k``, so every scaled loss is driven to the same value
    (1) whatever the loss's scale. The weight reported is ``e^{s_k}``.

    Who steps ``s``: the user's optimizer, jointly with the network, as in the paper
    (``lr=None``; add ``balancer.extra_parameters()`` and give ``tasks=`` first). With
    ``lr=...`` an internal Adam steps them.

    Extra cost per step: none (K scalars).
    """

    def __init__(self, tasks: Iterable[Any] | int | None = None, lr: float | None = None) -> None:
        super().__init__(tasks=tasks, lr=lr)

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        self._ensure_built(ctx)
        losses = torch.stack(ctx.losses)
        s = self.log_scales
        total = (torch.exp(s) * losses - s).sum()
        return total, torch.exp(s).detach()

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        result = super()._backward(ctx)
        self._step_inner()
        return result


@register("imtl")
class IMTL(_LossScales):
    """IMTL, the hybrid of IMTL-L and IMTL-G (Liu et al., ICLR 2021).

    1. IMTL-L scales the losses: ``L'_k = e^{s_k} L_k`` (``s`` learned on
       ``e^{s}L − s``, see :class:`IMTLL`).
    2. IMTL-G combines the gradients ``g_k`` of the scaled losses on the shared part into
       ``Σ α_k g_k`` with :func:`imtl_g_weights` (equal projection on every task's
       unit gradient, ``Σ α = 1``).

    Task-specific parameters receive the gradient of ``Σ_k L'_k`` (each head its own
    scaled loss), the shared parameters the IMTL-G direction. ``path="parameters"``
    (default) differentiates w.r.t. the shared parameters; ``"representation"`` uses the
    shared representation (the paper's cheaper choice; needs ``representation=``) and
    then back-propagates ``Σ α_k L'_k`` into the shared parameters.

    Reported weights: ``α_k e^{s_k}``, the factor on ``∇L_k`` in the shared update.
    ``s`` is stepped like IMTL-L's (user's optimizer unless ``lr`` is given).

    Extra cost per step: the engine's K per-task backward passes (over the shared
    parameters, or only down to the representation) and a K×K solve.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "path": [params.Options(PATHS)],
        "strategy": [params.Options(("loop", "batched"))],
    }

    needs_shared_params = True

    def __init__(
        self,
        tasks: Iterable[Any] | int | None = None,
        lr: float | None = None,
        path: str = "parameters",
        strategy: str = "loop",
    ) -> None:
        if path not in PATHS:
            raise PolytaskError(f"IMTL path must be one of {PATHS}, got {path!r}")
        self.path = path
        self.strategy = strategy
        super().__init__(tasks=tasks, lr=lr)

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        self._ensure_built(ctx)
        losses = torch.stack(ctx.losses)
        scaling.backward(self._scale_objective(losses))
        scale = torch.exp(self.log_scales.detach())
        scaled = [sk * loss for sk, loss in zip(scale, ctx.losses)]
        if self.path == "representation":
            rep = ctx.representation
            if rep is None or not rep.requires_grad:
                raise PolytaskError(
                    "IMTL(path='representation') needs representation=model.shared_representation"
                )
            check_representation_reached(self, ctx, rep)
            jac = scaling.jacobian(scaled, [rep], self.strategy, True)
            alpha = imtl_g_weights(jac @ jac.T).to(jac)
            others = non_shared_parameters(ctx)
            if others:
                scaling.backward(sum(scaled), inputs=others, retain_graph=True)
            shared_loss = sum(a * loss for a, loss in zip(alpha, scaled))
            scaling.backward(shared_loss, inputs=ctx.shared_params)
        else:
            jac = scaling.jacobian(scaled, ctx.shared_params, self.strategy, True, reduce=True)
            alpha = imtl_g_weights(jac @ jac.T).to(jac)
            scaling.add_to_grad(ctx.shared_params, alpha @ jac)
            others = non_shared_parameters(ctx)
            if others:
                scaling.backward(sum(scaled), inputs=others)
        self._step_inner()
        w = (alpha * scale).tolist()
        extras = {f"alpha/{n}": float(a) for n, a in zip(ctx.names, alpha)}
        return BalanceResult(dict(zip(ctx.names, w)), extras)
