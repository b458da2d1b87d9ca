"""GradNorm: gradient normalization for adaptive loss balancing."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from .. import engine, scaling
from ..base import BalanceContext, BalanceResult, check_representation_reached
from ..registry import register
from ._common import StatefulWeighting


def last_layer(shared: Sequence[Tensor]) -> list[Tensor]:
    """The parameters of the last shared layer: from the last tensor with two or more
    dimensions (a weight matrix or kernel) to the end of ``shared`` (its bias)."""
    for i in range(len(shared) - 1, -1, -1):
        if shared[i].dim() >= 2:
            return list(shared[i:])
    if not shared:
        raise PolytaskError("GradNorm needs shared_params=model.shared_parameters()")
    return [shared[-1]]


def gradnorm_target(norms: Tensor, losses: Tensor, initial: Tensor, alpha: float) -> Tensor:
    """GradNorm's target norms ``Ḡ · r_k^α`` (constants) for the weighted norms ``norms``.

    ``r_k = L̃_k / mean(L̃)`` with ``L̃_k = L_k / L_k(0)``: the relative inverse training rate.
    """
    ratio = losses / initial.clamp_min(torch.finfo(losses.dtype).tiny)
    r = ratio / ratio.mean().clamp_min(torch.finfo(losses.dtype).tiny)
    return (norms.mean() * r.pow(alpha)).detach()


def _whole_batch_norms(jac: Tensor, on_representation: bool) -> Tensor:
    """Each task's gradient norm on the whole batch under ``torch.distributed`` (the
    rank's own in one process): on parameters the Jacobian is averaged across ranks
    (the engine's reduction); on the representation, whose rows differ per rank, the
    whole batch's squared norm is ``Σ_r ‖g_r‖² / R²`` (K numbers reduced)."""
    ranks = engine.world_size()
    if ranks == 1:
        return jac.norm(dim=1)
    if on_representation:
        squares = engine.sum_across_ranks(jac.double().square().sum(dim=1))
        return (squares.sqrt() / ranks).to(jac.dtype)
    return engine.average_across_ranks(jac).norm(dim=1)


@register("gradnorm")
class GradNorm(StatefulWeighting):
    """GradNorm (Chen, Badrinarayanan, Lee & Rabinovich, ICML 2018).

    Learned weights ``w_k`` (initialised to 1). At each step the network is updated
    with ``Σ_k w_k L_k``; then the weights take one step on

        ``L_grad = Σ_k | w_k ‖∇_W L_k‖ − Ḡ · r_k^α |``

    where ``W`` is the last shared layer, ``Ḡ`` the mean weighted norm and
    ``r_k = (L_k/L_k(0)) / mean_j(L_j/L_j(0))`` (the target is held constant), and are
    renormalised to sum K. A task whose loss has fallen less (larger ``r_k``) gets a
    larger target norm, so its weight rises. ``α`` sets the strength of that pull
    (paper: 1.5 on NYUv2, 0.12 on its synthetic tasks; default 1.5).

    Who steps the weights: an internal Adam (``lr``, default 0.025; the paper gives no
    separate rate). With ``lr=None`` the user's optimizer steps them
    (``extra_parameters()``) and the renormalisation happens at the next backward.
    Weights are kept above ``min_weight`` before renormalising.

    Per-task gradients come from the Jacobian engine on the last shared layer
    (``layer="last"``), on an explicit parameter list, or on the shared representation
    (``layer="representation"``, needs ``representation=``).

    Extra cost per step: K backward passes restricted to the last shared layer (the
    per-task gradient norms) plus the weighted backward; K scalars of state.

    Args:
        alpha: the restoring-force exponent.
        tasks: task names (needed before building an external optimizer).
        lr: learning rate of the weights' internal Adam; None = user's optimizer.
        layer: "last", "representation", or the parameters to measure norms on.
        strategy: the engine's Jacobian strategy ("loop" or "batched").
        min_weight: floor on a weight before renormalisation.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alpha": [params.Interval(params.Real, 0, None)],
        "layer": ["no_validation"],
        "strategy": [params.Options(("loop", "batched"))],
        "min_weight": [params.Interval(params.Real, 0, None)],
    }

    needs_shared_params = True
    _has_parameters = True
    _transient_attrs = ("layer",)

    def __init__(
        self,
        alpha: float = 1.5,
        tasks: Iterable[Any] | int | None = None,
        lr: float | None = 0.025,
        layer: str | Sequence[Tensor] = "last",
        strategy: str = "loop",
        min_weight: float = 1e-3,
    ) -> None:
        self.alpha = float(alpha)
        self.layer = layer
        self.strategy = strategy
        self.min_weight = float(min_weight)
        self.initial_losses: Tensor | None = None
        super().__init__(tasks=tasks, lr=lr)

    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        self.task_weights = nn.Parameter(torch.ones(k, device=device, dtype=dtype))

    def _renormalize(self) -> None:
        with torch.no_grad():
            w = self.task_weights
            w.clamp_(min=self.min_weight)
            w.mul_(w.numel() / w.sum())

    def _norm_inputs(self, ctx: BalanceContext) -> list[Tensor]:
        if isinstance(self.layer, str):
            if self.layer == "last":
                return last_layer(ctx.shared_params)
            if self.layer == "representation":
                if ctx.representation is None or not ctx.representation.requires_grad:
                    raise PolytaskError(
                        "GradNorm(layer='representation') needs representation="
                        "model.shared_representation"
                    )
                check_representation_reached(self, ctx, ctx.representation)
                return [ctx.representation]
            raise PolytaskError(f"GradNorm layer must be 'last', 'representation' or params, "
                                f"got {self.layer!r}")
        return [p for p in self.layer]

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        self._ensure_built(ctx)
        if not self.internal_optimizer:
            self._renormalize()
        losses = ctx.loss_values
        if self.initial_losses is None:
            self.initial_losses = losses.clone()
        jac = scaling.jacobian(ctx.losses, self._norm_inputs(ctx), self.strategy, True)
        grad_norms = _whole_batch_norms(jac, on_representation=self.layer == "representation")
        del jac
        used = self.task_weights.detach().clone()
        total = sum(wk * loss for wk, loss in zip(used, ctx.losses))
        if total.requires_grad:
            scaling.backward(total)
        # the weights' own step, on L_grad
        weighted = self.task_weights * grad_norms
        target = gradnorm_target(weighted.detach(), losses, self.initial_losses, self.alpha)
        l_grad = (weighted - target).abs().sum()
        (grad,) = engine.gradient(l_grad, [self.task_weights])
        scaling.set_grad(self.task_weights, grad)  # s × grad under a loss scale, like .grad
        if self.internal_optimizer:
            self._step_inner()
            self._renormalize()
        extras = {"l_grad": float(l_grad.detach())}
        extras.update({f"grad_norm/{n}": float(v) for n, v in zip(ctx.names, grad_norms)})
        return BalanceResult(dict(zip(ctx.names, used.tolist())), extras)
