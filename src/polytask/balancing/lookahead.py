"""Lookahead: evaluate losses after a *virtual* optimizer step, leaving the model as is.

The one mechanism behind Auto-Lambda's meta-gradient (Liu et al., TMLR 2022) and
lookahead task affinity (Fifty et al., NeurIPS 2021): build the parameters
``θ' = θ − lr (d + momentum buffer + weight decay θ)`` as new tensors and run the
model at ``θ'`` with :func:`torch.func.functional_call`. The model's parameters,
buffers (e.g. BatchNorm running statistics, copied for the virtual pass) and optimizer
state are never modified.

A *loss of batch* is a callable ``loss_of_batch(forward) -> {task: scalar loss}``:
``forward`` calls the model (same signature as ``model(...)``) at the virtual
parameters, e.g.::

    def loss_of_batch(forward):
        out = forward(x)
        return {name: task.loss(out[name], y[name]) for name, task in tasks.items()}

    after = lookahead_losses(model, loss_of_batch, lr=0.1, direction=grads)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..errors import PolytaskError

Forward = Callable[..., Any]
LossOfBatch = Callable[[Forward], Mapping[str, Tensor]]


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """``{name: parameter}`` for every parameter of ``model`` that requires grad."""
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def optimizer_settings(optimizer: torch.optim.Optimizer | None, param: Tensor) -> dict[str, Any]:
    """lr, momentum, weight decay and momentum buffer the optimizer uses for ``param``."""
    if optimizer is None:
        return {}
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            state = optimizer.state.get(param, {})
            return {
                "lr": group.get("lr"),
                "momentum": group.get("momentum", 0.0) or 0.0,
                "weight_decay": group.get("weight_decay", 0.0) or 0.0,
                "buffer": state.get("momentum_buffer"),
            }
    return {}


def virtual_step(
    params: Mapping[str, Tensor],
    direction: Mapping[str, Tensor],
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    create_graph: bool = False,
) -> dict[str, Tensor]:
    """``θ' = θ − lr (d + μ·buf + wd·θ)`` for every parameter named in ``direction``.

    ``lr`` defaults to the optimizer's learning rate for each parameter; momentum and
    weight decay are read from ``optimizer`` when given (SGD semantics; other optimizers
    are approximated by that SGD step). Parameters missing from ``direction`` are kept.
    With ``create_graph=False`` the result is detached and requires grad (a fresh leaf
    to differentiate the lookahead loss against).
    """
    unknown = set(direction) - set(params)
    if unknown:
        raise PolytaskError(f"virtual_step: direction names unknown parameters {sorted(unknown)}")
    result: dict[str, Tensor] = {}
    for name, p in params.items():
        d = direction.get(name)
        if d is None:
            result[name] = p if create_graph else p.detach()
            continue
        if d.shape != p.shape:
            raise PolytaskError(
                f"virtual_step: direction of {name!r} has shape {tuple(d.shape)}, "
                f"the parameter {tuple(p.shape)}"
            )
        settings = optimizer_settings(optimizer, p)
        step_lr = lr if lr is not None else settings.get("lr")
        if step_lr is None:
            raise PolytaskError("virtual_step needs lr=... or an optimizer holding the parameters")
        base = p if create_graph else p.detach()
        update = d if create_graph else d.detach()
        if settings.get("weight_decay"):
            update = update + settings["weight_decay"] * base
        if settings.get("momentum") and settings.get("buffer") is not None:
            update = update + settings["momentum"] * settings["buffer"]
        new = base - step_lr * update
        result[name] = new if create_graph else new.detach().requires_grad_(True)
    return result


def functional_forward(
    model: nn.Module, params: Mapping[str, Tensor], copy_buffers: bool = True
) -> Forward:
    """A callable running ``model`` at ``params`` (buffers copied unless told not to)."""
    buffers = {
        n: (b.clone() if copy_buffers else b) for n, b in model.named_buffers()
    }
    state = {**buffers, **params}

    def forward(*args: Any, **kwargs: Any) -> Any:
        return functional_call(model, state, args, kwargs, strict=False)

    return forward


def lookahead_losses(
    model: nn.Module,
    loss_of_batch: LossOfBatch,
    direction: Mapping[str, Tensor],
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    params: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Losses after a virtual step along ``direction``: ``(losses, virtual params)``.

    The losses are in the graph of the returned virtual parameters (fresh leaves), so
    ``torch.autograd.grad(sum(losses.values()), list(virtual.values()))`` gives the
    gradient at ``θ'``. ``params`` defaults to the model's trainable parameters.
    """
    params = dict(params) if params is not None else trainable_parameters(model)
    virtual = virtual_step(params, direction, lr=lr, optimizer=optimizer)
    losses = dict(loss_of_batch(functional_forward(model, virtual)))
    return losses, virtual


def unflatten(flat: Tensor, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a flat vector into tensors shaped like ``params`` (in order)."""
    out: dict[str, Tensor] = {}
    offset = 0
    for name, p in params.items():
        n = p.numel()
        out[name] = flat[offset : offset + n].view_as(p)
        offset += n
    if offset != flat.numel():
        raise PolytaskError(f"flat vector of size {flat.numel()} for parameters of size {offset}")
    return out


def flatten(tensors: Iterable[Tensor | None], like: Iterable[Tensor]) -> Tensor:
    """Concatenate ``tensors`` flattened (None -> zeros shaped like ``like``)."""
    parts = [
        (t.reshape(-1) if t is not None else torch.zeros_like(p).reshape(-1))
        for t, p in zip(tensors, like)
    ]
    return torch.cat(parts)
