"""Auto-Lambda: task weights meta-learned on a validation split."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from .. import engine, scaling
from ..base import BalanceContext, BalanceResult
from ..lookahead import (
    LossOfBatch,
    lookahead_losses,
    optimizer_settings,
    trainable_parameters,
    unflatten,
)
from ..registry import register
from ._common import StatefulWeighting


@register("auto-lambda")
class AutoLambda(StatefulWeighting):
    """Auto-Lambda (Liu, James, Davison & Johns, TMLR 2022, "Auto-Lambda: disentangling
    dynamic task relationships").

    Task weights ``λ`` (init 0.1) are trained so that one SGD step on
    ``Σ_k λ_k L_k^train`` lowers the validation loss of the *primary* tasks:
    ``∇_λ L^val(θ − α Σ_k λ_k ∇L_k^train)``. Here that meta-gradient is exact:
    ``∂L^val(θ')/∂λ_k = −α ∇L_k^train(θ) · ∇L^val(θ')``, with the per-task training
    gradients from the Jacobian engine and ``L^val(θ')`` evaluated by the shared
    lookahead mechanism (:mod:`polytask.balancing.lookahead`; the model is not
    modified). The official code approximates the same product by finite differences.
    ``λ`` takes one Adam step (``meta_lr``, default 1e-4, the paper's NYUv2 setting), then
    the model's gradient ``Σ_k λ_k ∇L_k`` is written from the same Jacobian, so the
    update uses the new weights as in the paper.

    Validation data: ``val_loss`` is a *loss of batch* callable,
    ``val_loss(forward) -> {task: loss}``, that draws its next validation batch itself
    and runs ``forward`` (the model at the virtual parameters) on it. Build one from a
    loader with :func:`val_loss_from_loader`. ``model`` (whose trainable parameters
    are the ``θ`` above) and ``val_loss`` are given to the constructor or later with
    :meth:`attach`. The Trainer attaches its model, optimizer and a second shuffled
    pass over the *training* loader (the official code's choice: the validation split
    stays for model selection), and its non-auxiliary tasks as ``primary``.
    ``optimizer`` (optional) supplies the virtual step's learning rate, momentum and
    weight decay (an SGD step; for Adam only its lr and weight decay are used); else
    ``lr`` is used.

    ``primary``: tasks whose validation loss counts (default every task: the
    multi-task setting; give the main tasks for auxiliary learning).

    Extra cost per step: K backward passes over all trainable parameters (the
    Jacobian, K×P memory) replace the usual one, plus one forward and one backward of
    the model on a validation batch (every ``update_every`` steps).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "weight_init": [float],
        "meta_lr": [params.Interval(params.Real, 0, None, closed="neither")],
        "update_every": [params.Interval(params.Integral, 1, None)],
        "strategy": [params.Options(("loop", "batched"))],
    }

    _has_parameters = True
    _transient_attrs = ("_model", "_val_loss", "_optimizer")

    def __init__(
        self,
        model: nn.Module | None = None,
        val_loss: LossOfBatch | None = None,
        tasks: Iterable[Any] | int | None = None,
        primary: Sequence[str] | None = None,
        weight_init: float = 0.1,
        meta_lr: float = 1e-4,
        lr: float | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        update_every: int = 1,
        strategy: str = "loop",
    ) -> None:
        self.weight_init = float(weight_init)
        self.primary = list(primary) if primary is not None else None
        self.virtual_lr = lr
        self.update_every = int(update_every)
        self.strategy = strategy
        self._model: nn.Module | None = None
        self._val_loss: LossOfBatch | None = None
        self._optimizer: torch.optim.Optimizer | None = None
        super().__init__(tasks=tasks, lr=meta_lr)
        self.attach(model=model, val_loss=val_loss, optimizer=optimizer)

    def attach(
        self,
        model: nn.Module | None = None,
        val_loss: LossOfBatch | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        loader: Iterable[Any] | None = None,
        tasks: Mapping[str, Any] | None = None,
        primary: Sequence[str] | None = None,
        device: torch.device | str | None = None,
    ) -> AutoLambda:
        """Give the model, the validation loss-of-batch and the model's optimizer.

        Instead of ``val_loss``, ``loader`` and ``tasks`` build one with
        :func:`val_loss_from_loader` (the Trainer passes its training loader: a second,
        differently shuffled pass over the training set, as in the official code). An
        explicit ``val_loss`` or ``primary`` given earlier is kept.
        """
        # plain attributes (not submodules): the model's parameters are not the balancer's
        if model is not None:
            object.__setattr__(self, "_model", model)
        if val_loss is None and loader is not None and self._val_loss is None:
            if tasks is None:
                raise PolytaskError("AutoLambda.attach(loader=...) needs tasks=...")
            val_loss = val_loss_from_loader(loader, tasks, device)
        if val_loss is not None:
            object.__setattr__(self, "_val_loss", val_loss)
        if optimizer is not None:
            object.__setattr__(self, "_optimizer", optimizer)
        if lr is not None:
            self.virtual_lr = lr
        if primary is not None and self.primary is None:
            self.primary = list(primary)
        return self

    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        self.meta_weights = nn.Parameter(
            torch.full((k,), self.weight_init, device=device, dtype=dtype)
        )

    def _lr_vector(self, params: Mapping[str, Tensor], like: Tensor) -> Tensor:
        parts = []
        for p in params.values():
            lr = self.virtual_lr
            if lr is None:
                lr = optimizer_settings(self._optimizer, p).get("lr")
            if lr is None:
                raise PolytaskError(
                    "AutoLambda needs the virtual step's learning rate: give lr=... or "
                    "attach(optimizer=the model's optimizer)"
                )
            parts.append(torch.full((p.numel(),), float(lr), dtype=like.dtype, device=like.device))
        return torch.cat(parts)

    def meta_gradient(
        self, jac: Tensor, params: Mapping[str, Tensor], names: list[str]
    ) -> tuple[Tensor, dict[str, float]]:
        """``∇_λ L^val_primary(θ − lr λᵀJ)`` for the K×P training Jacobian ``jac``."""
        lam = self.meta_weights.detach()
        direction = unflatten(lam @ jac, params)
        lr_vec = self._lr_vector(params, jac)
        lr_direction = unflatten(lr_vec, params)
        # the virtual step uses per-parameter lr: fold it into the direction, lr = 1
        scaled = {n: direction[n] * lr_direction[n] for n in params}
        val_losses, virtual = lookahead_losses(
            self._model, self._val_loss, scaled, lr=1.0, optimizer=None, params=params
        )
        primary = self.primary if self.primary is not None else names
        missing = [n for n in primary if n not in val_losses]
        if missing:
            raise PolytaskError(
                f"AutoLambda: val_loss returned no loss for primary task(s) {missing}; "
                f"it returned {sorted(val_losses)}"
            )
        objective = sum(val_losses[n] for n in primary)
        grads = engine.gradient(objective, list(virtual.values()))
        v = torch.cat([g.reshape(-1) for g in grads])
        meta_grad = -(jac @ (lr_vec * v))
        return meta_grad, {f"val_loss/{n}": float(val_losses[n].detach()) for n in val_losses}

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        if self._model is None or self._val_loss is None:
            raise PolytaskError(
                "AutoLambda needs model=... and val_loss=... (constructor or attach()); "
                "see polytask.balancing.weighting.autolambda.val_loss_from_loader"
            )
        self._ensure_built(ctx)
        unknown = set(self.primary or ()) - set(ctx.names)
        if unknown:
            raise PolytaskError(f"AutoLambda primary tasks {sorted(unknown)} are not trained tasks")
        params = trainable_parameters(self._model)
        jac = scaling.jacobian(ctx.losses, list(params.values()), self.strategy, False,
                               reduce=True)
        extras: dict[str, float] = {}
        if ctx.step % self.update_every == 0:
            meta_grad, extras = self.meta_gradient(jac, params, ctx.names)
            self.meta_weights.grad = scaling.scaled(meta_grad).to(self.meta_weights)
            self._step_inner()  # unscales under a loss scale
        lam = self.meta_weights.detach()
        scaling.add_to_grad(list(params.values()), lam.to(jac) @ jac)
        return BalanceResult(dict(zip(ctx.names, lam.tolist())), extras)


def _split(batch: Any) -> tuple[Any, Mapping[str, Tensor], Mapping[str, Tensor]]:
    if isinstance(batch, Mapping):
        return batch["inputs"], batch["targets"], batch.get("masks") or {}
    if isinstance(batch, Sequence) and len(batch) in (2, 3):
        return batch[0], batch[1], (batch[2] if len(batch) == 3 else None) or {}
    raise PolytaskError(
        "a validation batch must be (inputs, targets[, masks]) or a dict with 'inputs' "
        f"and 'targets'; got {type(batch).__name__}"
    )


def _to(value: Any, device: torch.device | None) -> Any:
    if device is None:
        return value
    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, Mapping):
        return {k: _to(v, device) for k, v in value.items()}
    return value


def val_loss_from_loader(
    loader: Iterable[Any],
    tasks: Mapping[str, Any],
    device: torch.device | str | None = None,
) -> LossOfBatch:
    """A loss-of-batch callable cycling over ``loader``'s batches — ``(inputs,
    targets[, masks])`` or ``{"inputs", "targets"[, "masks"]}`` with dicts by task — and
    scoring each task present with its ``Task.loss``."""
    dev = torch.device(device) if device is not None else None
    iterator: Iterator[Any] | None = None

    def next_batch() -> Any:
        nonlocal iterator
        if iterator is None:
            iterator = iter(loader)
        try:
            return next(iterator)
        except StopIteration:
            iterator = iter(loader)
            return next(iterator)

    def loss_of_batch(forward: Any) -> dict[str, Tensor]:
        inputs, targets, masks = (_to(v, dev) for v in _split(next_batch()))
        out = forward(inputs)
        return {
            n: t.loss(out[n], targets[n], masks.get(n)) for n, t in tasks.items() if n in targets
        }

    return loss_of_batch
