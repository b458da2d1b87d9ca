"""The plain-loop protocol, and the checks that catch a loop that does not follow it.

What a training loop calls, and when, for every method (the Trainer does the same):

1. ``balancer = polytask.balancing.get(name)``; ``balancer.prepare(task_names)``
   before building the optimizer (methods with learned weights create them here);
2. ``optimizer = Adam([*model.parameters(), *balancer.extra_parameters()])``;
3. ``balancer.attach(model=model, optimizer=optimizer, tasks=tasks, loader=loader)``
   once (methods that need more than the losses, e.g. Auto-Lambda, read it; UW reads
   the task kinds; the others ignore it);
4. each step: ``optimizer.zero_grad()``, ``balancer.backward(losses,
   shared_params=model.shared_parameters(), representation=model.shared_representation)``,
   ``optimizer.step()``, then ``balancer.on_step_end()`` (methods that want the same
   batch's losses after the step, ``balancer.needs_losses_after_step``, take them
   there);
5. each epoch end: ``balancer.on_epoch_end(epoch)``.

With float16 autocast, step 4's backward takes the loss scaler instead of a scaled
loss: ``balancer.backward(losses, ..., grad_scale=scaler)``, then
``scaler.step(optimizer)`` and ``scaler.update()`` (:mod:`.scaling`).

Steps that a method does not need are no-ops for it, so the same loop runs every
method. Two mistakes are caught at the first steps of ``backward``, with a
``RuntimeWarning`` that says what to add: shared parameters that no loss reaches (a
wrong ``shared_params``), and learned balancer parameters that the optimizer does not
step (an optimizer built without ``balancer.extra_parameters()``).
"""

from __future__ import annotations

import warnings
import weakref
from typing import TYPE_CHECKING

import torch

from . import engine

if TYPE_CHECKING:
    from .base import BalanceContext, Balancer

#: steps during which unchanged learned parameters are tolerated (accumulation)
PATIENCE = 8

# per-balancer snapshots of learned parameters, kept off the module (no checkpoint)
_SNAPSHOTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_step(balancer: Balancer, ctx: BalanceContext) -> None:
    """Run the protocol checks at the first steps of ``balancer.backward``."""
    step = ctx.step
    if step == 0:
        _check_shared_reached(balancer, ctx)
    if step <= PATIENCE:
        _check_extra_stepped(balancer, step)


def _check_shared_reached(balancer: Balancer, ctx: BalanceContext) -> None:
    if not ctx.shared_params:
        return
    reached: set[int] = set()
    for loss in ctx.losses:
        if loss.requires_grad:
            reached.update(id(p) for p in engine.leaf_parameters(loss))
    unreached = [p for p in ctx.shared_params if id(p) not in reached]
    if not unreached:
        return
    shapes = [tuple(p.shape) for p in unreached[:5]]
    more = f" and {len(unreached) - 5} more" if len(unreached) > 5 else ""
    warnings.warn(
        f"{type(balancer).__name__}: {len(unreached)} of {len(ctx.shared_params)} "
        f"shared_params are reached by no task loss (shapes {shapes}{more}); they get no "
        "gradient"
        + (" and methods that read the shared gradients see zeros there" if
           balancer.needs_shared_params else "")
        + ". Pass the parameters the losses use (model.shared_parameters()).",
        RuntimeWarning,
        stacklevel=4,
    )


def _check_extra_stepped(balancer: Balancer, step: int) -> None:
    try:
        params = [p for p in balancer.extra_parameters() if p.requires_grad]
    except Exception:  # not built yet: nothing to watch
        return
    if not params:
        return
    state = _SNAPSHOTS.get(balancer)
    if state is None:
        _SNAPSHOTS[balancer] = {"values": [p.detach().clone() for p in params], "done": False}
        return
    if state["done"]:
        return
    moved = any(
        p.shape != v.shape or not torch.equal(p.detach(), v)
        for p, v in zip(params, state["values"])
    )
    if moved:
        state["done"] = True
        return
    if step == PATIENCE:
        state["done"] = True
        warnings.warn(
            f"{type(balancer).__name__}'s learned parameters (balancer.extra_parameters()) "
            f"have not changed in {PATIENCE} steps: no optimizer steps them, so the method "
            "runs with its initial weights. Build the optimizer with "
            "[*model.parameters(), *balancer.extra_parameters()] after "
            "balancer.prepare(task_names) (the Trainer does this).",
            RuntimeWarning,
            stacklevel=4,
        )
