"""Fast adaptive multitask optimization (FAMO)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from .. import engine, scaling
from ..base import BalanceContext, BalanceResult
from ..registry import register
from ._common import StatefulWeighting


@register("famo")
class FAMO(StatefulWeighting):
    """FAMO (Liu, Feng, Stone & Liu, NeurIPS 2023, "FAMO: Fast adaptive multitask
    optimization").

    Task logits ``ξ`` give ``z = softmax(ξ)``. The network takes one backward of
    ``Σ_k (z_k / c) log(L_k − L_k* + ε)`` with ``c = Σ_k z_k / (L_k − L_k* + ε)``
    (``L* = 0``), i.e. the weights on ``∇L_k`` are ``z_k / (c (L_k + ε))`` (reported;
    they sum to 1). After the step the logits move on the change of the log-losses,
    ``δ_k = log L_k(before) − log L_k(after)``: ``ξ ← Adam(ξ, ∇_ξ (z·δ))`` with weight
    decay ``γ``, so a task whose loss fell less gains weight.

    Which "after" losses: the same batch's losses at the new parameters (the paper's
    Algorithm 1 and the authors' code: a forward pass under ``no_grad`` after
    ``optimizer.step()``). The Trainer does it (``needs_losses_after_step``) and calls
    ``balancer.on_step_end(losses_after)``; in a plain loop, call it yourself. If it is
    not called, the next ``backward`` uses its own batch's losses as the "after"
    losses (no extra forward, a noisier estimate that differs from the paper's). As in
    the authors' trainer, that forward runs with the model in training mode (dropout
    active, batch-norm statistics updated once more).

    Who steps ``ξ``: an internal Adam with ``lr=0.025`` and weight decay ``gamma``.
    The authors' code defaults to ``gamma=1e-5`` in its class and passes
    ``--gamma`` per benchmark (0.01 in the paper's NYUv2/CityScapes scripts, 0.001 on
    CelebA); polytask defaults to 0.01. The authors' ``max_norm=1.0`` clips the shared
    gradient *before* ``loss.backward()`` (in ``WeightMethod.backward``), where the
    gradients are still zero, so it has no effect; polytask does not clip (use the
    Trainer's ``grad_clip``).

    Dead tasks (loss exactly 0, no label in the batch) drop out of ``c`` and of the
    loss at that step (weight 0) and their logit does not move on that step.

    Extra cost per step: K logits and, under the Trainer, one extra forward pass
    (no backward) on the batch after the optimizer step.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "lr": [params.Interval(params.Real, 0, None, closed="neither")],
        "gamma": [params.Interval(params.Real, 0, None)],
        "eps": [params.Interval(params.Real, 0, None, closed="neither")],
    }

    _has_parameters = True
    needs_losses_after_step = True

    def __init__(
        self,
        tasks: Iterable[Any] | int | None = None,
        lr: float = 0.025,
        gamma: float = 0.01,
        eps: float = 1e-8,
    ) -> None:
        if lr is None or lr <= 0:
            raise PolytaskError("FAMO needs a positive lr for its logits")
        self.eps = float(eps)
        self._before: Tensor | None = None
        super().__init__(tasks=tasks, lr=lr, weight_decay=gamma)

    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        self.logits = nn.Parameter(torch.zeros(k, device=device, dtype=dtype))

    def update(self, losses_after: Tensor) -> None:
        """Move the logits on ``δ = log L(before) − log L(after)`` (one Adam step)."""
        if self._before is None:
            return
        after = losses_after.detach().to(self._before)
        delta = torch.log(self._before + self.eps) - torch.log(after + self.eps)
        # a task dead before or after the step (loss exactly 0) gives no signal
        delta = delta.masked_fill((self._before == 0) | (after == 0), 0.0)
        with torch.enable_grad():
            z = torch.softmax(self.logits, dim=0)
            (grad,) = engine.gradient(z, [self.logits], grad_output=delta)
        self.logits.grad = scaling.scaled(grad)  # _step_inner unscales under a loss scale
        self._step_inner()
        self._before = None

    def on_step_end(self, losses_after: Mapping[str, Tensor] | Tensor | None = None) -> None:
        """After ``optimizer.step()``: give the same batch's losses at the new parameters."""
        if losses_after is None:
            return
        if isinstance(losses_after, Mapping):
            names = self.task_names or list(losses_after)
            missing = set(names) - set(losses_after)
            if missing:
                raise PolytaskError(f"FAMO.on_step_end lacks losses of tasks {sorted(missing)}")
            losses_after = torch.stack([torch.as_tensor(losses_after[n]).reshape(())
                                        for n in names])
        self.update(losses_after)

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        self._ensure_built(ctx)
        values = ctx.loss_values
        if self._before is not None:  # no on_step_end since the last step
            self.update(values)
        live = ctx.live.to(values.device)
        z = torch.softmax(self.logits.detach(), dim=0)
        # the loss values (under torch.distributed: the whole batch's, averaged across
        # ranks) fix the weights; the backward of Σ_k w_k L_k then equals that of
        # Σ_k (z_k / c) log(L_k + ε) in one process, and is linear in the batch, so
        # the ranks' gradients average to the whole batch's
        shifted = values.to(z.dtype) + self.eps
        zl = z * live.to(z.dtype)  # dead tasks drop out of this step
        c = (zl / shifted).sum()
        if bool(live.any()):
            w = zl / (c * shifted)
            total = sum(wk.to(loss.dtype) * loss for wk, loss in zip(w, ctx.losses))
            if isinstance(total, Tensor) and total.requires_grad:
                scaling.backward(total)
        else:
            w = torch.zeros_like(z)
        self._before = values.clone()
        extras = {f"z/{n}": float(v) for n, v in zip(ctx.names, z)}
        return BalanceResult(dict(zip(ctx.names, w.tolist())), extras)
