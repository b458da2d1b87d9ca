"""Loss scaling for float16 mixed precision, inside the balancers.

float16 gradients underflow; ``torch.amp.GradScaler`` multiplies the loss by a scale
``s`` before the backward and divides the gradients by ``s`` before the optimizer
step (``scaler.step``), skipping the step when a gradient is inf or NaN. A balancer
that *reads* per-task gradients cannot be handed a scaled loss: a rule such as
Nash-MTL (``G α = 1/α``) or MGDA with loss normalisation gives another direction on
``sJ`` than on ``J``. So the scale is handled here, once for every method:

- ``balancer.backward(losses, ..., grad_scale=scaler)`` (a ``GradScaler``, whose
  current scale is read, or a number) makes ``s`` active for that call;
- every backward the balancer runs is seeded with ``s`` (``seeded``, ``backward``):
  the float16 activations' gradients are computed in the scaled range, as with
  ``scaler.scale(loss).backward()``;
- every per-task gradient a rule *reads* (:func:`jacobian`, :func:`gramian`) is
  divided by ``s`` first, in float32 or wider, and checked: the rule sees the
  Jacobian (or Gramian) of fp32 training, so the weights are those of the unscaled
  gradients;
- everything the balancer *writes* to ``.grad`` (:func:`backward`,
  :func:`add_to_grad`, :func:`set_grad`) is ``s ×`` the update, which is what
  ``scaler.step(optimizer)`` expects: it unscales, checks for inf/NaN and skips;
- a method that edits ``.grad`` after its backward (Nash-MTL's and FairGrad's
  clipping of the shared gradient) does it on the unscaled norm
  (:func:`clip_grad_norm_`);
- a balancer's *internal* optimizer (``lr=...`` of GradNorm, FAMO, UW, ...) unscales
  its parameters' gradients itself and skips its step when one is not finite
  (:func:`unscale_grads_`);
- per-task gradients that overflow raise :class:`GradientOverflow` inside the
  balancer: the rule is skipped (its state is left as it was), ``.grad`` of the
  shared parameters is set to inf, so ``scaler.step`` skips the update and
  ``scaler.update()`` lowers the scale, as for any overflowing step.

Without an active scale (fp32, bf16) every function here is the plain engine call.
Scales are powers of two in practice (GradScaler's), so the division is exact and
the weights equal the unscaled ones bit for bit (``tests/balancing/test_scaling.py``).

Extra cost per step: one multiplication of the losses and one division of the
Jacobian (or Gramian) by ``s``, plus a finiteness check of what the rule reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch
from torch import Tensor

from ..errors import PolytaskError
from . import engine

_SCALE: ContextVar[float | None] = ContextVar("polytask_grad_scale", default=None)


class GradientOverflow(ArithmeticError):
    """Per-task gradients are not finite under an active loss scale (fp16 overflow)."""


def resolve(grad_scale: Any, device: torch.device | str | None = None) -> float | None:
    """The scale as a float (None: no scaling) from a ``GradScaler``, a tensor or a
    number; a disabled scaler, None and 1 mean no scaling. A scaler is read through
    ``scaler.scale`` (on ``device``, where the losses are), which also makes it
    ready for ``scaler.step`` as ``scaler.scale(loss).backward()`` would."""
    if grad_scale is None:
        return None
    if isinstance(grad_scale, torch.amp.GradScaler):
        if not grad_scale.is_enabled():
            return None
        value = float(grad_scale.scale(torch.ones((), device=device or "cpu")))
    elif isinstance(grad_scale, Tensor):
        if grad_scale.numel() != 1:
            raise PolytaskError(
                f"grad_scale must be one number, got shape {tuple(grad_scale.shape)}"
            )
        value = float(grad_scale)
    elif isinstance(grad_scale, (int, float)) and not isinstance(grad_scale, bool):
        value = float(grad_scale)
    else:
        raise PolytaskError(
            "grad_scale must be a torch.amp.GradScaler, a positive number or None, got "
            f"{type(grad_scale).__name__}"
        )
    if not (math.isfinite(value) and value > 0):
        raise PolytaskError(f"grad_scale must be finite and positive, got {value}")
    return None if value == 1.0 else value


@contextmanager
def active(scale: float | None) -> Iterator[None]:
    """Make ``scale`` the active loss scale (None: keep the one already active, so a
    wrapper's inner balancer inherits its scale)."""
    if scale is None:
        yield
        return
    token = _SCALE.set(scale)
    try:
        yield
    finally:
        _SCALE.reset(token)


def current() -> float | None:
    """The active loss scale, or None."""
    return _SCALE.get()


def seeded(losses: Sequence[Tensor]) -> list[Tensor]:
    """The losses multiplied by the active scale (unchanged without one): what a
    backward that must not underflow in float16 differentiates."""
    s = current()
    return list(losses) if s is None else [loss * s for loss in losses]


def unscale(values: Tensor, power: int = 1) -> Tensor:
    """``values / s**power`` in float32 or wider, checked finite under a scale
    (raises :class:`GradientOverflow`); unchanged without a scale."""
    s = current()
    if s is None:
        return values
    if values.dtype not in (torch.float32, torch.float64):
        values = values.float()
    if not bool(torch.isfinite(values).all()):
        raise GradientOverflow("per-task gradients are not finite under the loss scale")
    return values / (s**power)


def jacobian(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    retain_graph: bool = True,
    chunk_size: int | None = None,
    *,
    reduce: bool = False,
) -> Tensor:
    """The engine's K×P Jacobian of ``losses``, computed on the scaled losses and
    returned unscaled. A float16 or bfloat16 Jacobian (gradients of a half-precision
    representation) is returned in float32, scale or not, so that no rule runs its
    arithmetic in half precision. With ``reduce`` (for parameters, whose gradients
    the ranks share; not for a representation, whose rows are each rank's samples)
    it is averaged across ``torch.distributed`` ranks: the whole batch's Jacobian."""
    jac = engine.compute_jacobian(seeded(losses), inputs, strategy, retain_graph, chunk_size)
    if jac.dtype in (torch.float16, torch.bfloat16):
        jac = jac.float()
    jac = unscale(jac)
    return engine.average_across_ranks(jac) if reduce else jac


def gramian(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    chunk_size: int | None = None,
    max_block_numel: int | None = None,
    reduce: bool = False,
    *,
    by_blocks: bool = False,
    rtol: float = 1e-3,
) -> Tensor:
    """The engine's K×K Gramian (float64) of ``losses``, on the scaled losses and
    divided by ``s²``; ``by_blocks`` picks :func:`engine.gramian_by_blocks` (the
    whole Jacobian at once when ``max_block_numel`` is None); ``rtol`` as in
    :func:`engine.gramian_by_products`."""
    try:
        if by_blocks or max_block_numel is not None:
            gram = engine.gramian_by_blocks(
                seeded(losses), inputs, strategy, chunk_size, max_block_numel, reduce)
        else:
            gram = engine.compute_gramian(
                seeded(losses), inputs, strategy, chunk_size, None, reduce, rtol)
    except FloatingPointError as error:
        if current() is None:
            raise
        raise GradientOverflow(str(error)) from error
    return unscale(gram, power=2)


def scaled(values: Tensor) -> Tensor:
    """``s × values`` (unchanged without a scale): a direction about to be written."""
    s = current()
    return values if s is None else values * s


def backward(
    total: Tensor,
    inputs: Sequence[Tensor] | None = None,
    retain_graph: bool = False,
) -> None:
    """``total.backward()`` seeded with the active scale (``.grad += s ∇total``).

    Under ``torch.distributed`` (:func:`engine.averages_writes`) the gradients are
    averaged across ranks before they reach ``.grad`` (``inputs``, or every leaf
    ``total`` reaches): the engine's one all-reduce of a balancer's written gradients.
    """
    s = current()
    seed = total if s is None else total * s
    if engine.averages_writes():
        params = list(inputs) if inputs is not None else engine.leaf_parameters(seed)
        engine.backward_averaged(seed, params, retain_graph)
        return
    engine.backward_from(seed, inputs=inputs, retain_graph=retain_graph)


def add_to_grad(params: Sequence[Tensor], flat: Tensor) -> None:
    """:func:`engine.add_to_grad` of ``s × flat``."""
    engine.add_to_grad(params, scaled(flat))


def set_grad(param: Tensor, grad: Tensor) -> None:
    """Add ``s × grad`` to ``param.grad`` (a balancer's own parameter)."""
    value = scaled(grad).to(param.dtype)
    if param.grad is None:
        param.grad = value.clone()
    else:
        param.grad.add_(value)


def clip_grad_norm_(params: Sequence[Tensor], max_norm: float) -> float:
    """Clip the total norm of the *unscaled* ``.grad`` of ``params`` to ``max_norm``
    (``.grad`` holds ``s ×`` it under a scale); return that unscaled norm."""
    s = current() or 1.0
    return float(torch.nn.utils.clip_grad_norm_(list(params), max_norm * s)) / s


def unscale_grads_(params: Sequence[Tensor]) -> bool:
    """Divide the ``.grad`` of ``params`` by the active scale in place; return whether
    all are finite (always True without a scale)."""
    s = current()
    if s is None:
        return True
    finite = True
    for p in params:
        if p.grad is not None:
            p.grad.div_(s)
            finite = finite and bool(torch.isfinite(p.grad).all())
    return finite


def mark_overflow(params: Sequence[Tensor], losses: Sequence[Tensor]) -> None:
    """Make the step's gradients non-finite so that ``scaler.step`` skips it: inf in
    the ``.grad`` of ``params`` (or, without any, of whatever the losses reach)."""
    if params:
        for p in params:
            if p.grad is None:
                p.grad = torch.full_like(p, math.inf)
            else:
                p.grad.fill_(math.inf)
        return
    total = sum(loss for loss in losses if loss.requires_grad)
    if isinstance(total, Tensor):
        engine.backward_from(total * math.inf)
