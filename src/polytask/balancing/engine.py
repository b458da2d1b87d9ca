"""The Jacobian engine: the one place where per-task gradients are computed.

Strategies for the per-task gradients of a set of inputs (parameters, or the shared
representation):

- ``"loop"``: one ``torch.autograd.grad`` call per task, the graph kept between calls;
- ``"batched"``: one vectorised call with ``is_grads_batched=True`` (``torch.vmap``
  over the rows of the identity), optionally in chunks of ``chunk_size`` tasks to
  bound memory; operators that vmap does not support fall back to the loop, with a
  warning given once.

Gradients are returned flattened and concatenated over the inputs, one row per task:
the K×P Jacobian. Inputs a loss does not reach get zeros.

:func:`compute_gramian` gives the K×K Gramian ``J Jᵀ`` (float64, overflow-safe)
without holding the whole Jacobian: it walks the inputs in blocks of at most
``max_block_numel`` elements, computes the K×|block| Jacobian of one block, folds it
into the Gramian and frees it before the next. Peak extra memory is K × the largest
block (plus the batched backward's K × activation buffers with ``"batched"``); the
price is one backward per block, each going from the losses down to that block only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from torch import Tensor

STRATEGIES = ("loop", "batched")
_warned_fallback = False


def _flatten(grads: Sequence[Tensor | None], inputs: Sequence[Tensor], rows: int | None):
    parts = []
    for grad, inp in zip(grads, inputs):
        if grad is None:
            shape = (rows, inp.numel()) if rows is not None else (inp.numel(),)
            parts.append(torch.zeros(shape, device=inp.device, dtype=inp.dtype))
        else:
            parts.append(grad.reshape(rows, -1) if rows is not None else grad.reshape(-1))
    return torch.cat(parts, dim=-1)


def jacobian_loop(
    losses: Sequence[Tensor], inputs: Sequence[Tensor], retain_graph: bool = True
) -> Tensor:
    """K×P Jacobian by one ``autograd.grad`` call per loss (rows written in place, so
    the peak is the K×P result plus one task's gradients)."""
    sizes = [inp.numel() for inp in inputs]
    ref = inputs[0] if inputs else torch.zeros(())
    out = torch.zeros(len(losses), sum(sizes), device=ref.device, dtype=ref.dtype)
    last = len(losses) - 1
    for k, loss in enumerate(losses):
        if not loss.requires_grad:
            continue
        grads = torch.autograd.grad(
            loss, inputs, retain_graph=retain_graph or k < last, allow_unused=True
        )
        offset = 0
        for grad, n in zip(grads, sizes):
            if grad is not None:
                out[k, offset : offset + n] = grad.reshape(-1)
            offset += n
        del grads
    return out


def jacobian_batched(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    retain_graph: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """K×P Jacobian by vectorised backward passes over the rows of the identity."""
    global _warned_fallback
    stacked = torch.stack(list(losses))
    if not stacked.requires_grad:
        return jacobian_loop(losses, inputs, retain_graph)
    k = stacked.shape[0]
    eye = torch.eye(k, device=stacked.device, dtype=stacked.dtype)
    chunk = chunk_size or k
    blocks = []
    try:
        for start in range(0, k, chunk):
            rows = eye[start : start + chunk]
            last = start + chunk >= k
            grads = torch.autograd.grad(
                stacked,
                inputs,
                grad_outputs=rows,
                retain_graph=retain_graph or not last,
                is_grads_batched=True,
                allow_unused=True,
            )
            blocks.append(_flatten(grads, inputs, rows.shape[0]))
    except RuntimeError as error:  # an operator without a batching rule
        if not _warned_fallback:
            warnings.warn(
                f"batched Jacobian failed ({str(error).splitlines()[0]}); "
                "using the loop of autograd calls instead",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_fallback = True
        return jacobian_loop(losses, inputs, retain_graph)
    return torch.cat(blocks)


def compute_jacobian(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    retain_graph: bool = True,
    chunk_size: int | None = None,
) -> Tensor:
    """K×P Jacobian of ``losses`` w.r.t. ``inputs`` by ``strategy`` (loop or batched)."""
    if strategy == "loop":
        return jacobian_loop(losses, inputs, retain_graph)
    if strategy == "batched":
        return jacobian_batched(losses, inputs, retain_graph, chunk_size)
    raise ValueError(f"unknown Jacobian strategy {strategy!r}; available: {STRATEGIES}")


def scaled_gram(rows: Tensor) -> Tensor:
    """``rows @ rows.T`` in float64, safe from overflow and underflow in float32.

    The rows are divided by their largest absolute entry before the product and the
    square of that scale is put back in float64, so gradients of 1e±30 give a finite,
    exact-to-rounding Gramian.
    """
    rows = rows.detach()
    scale = rows.abs().amax() if rows.numel() else rows.new_zeros(())
    if not bool(torch.isfinite(scale)):
        raise FloatingPointError("a task gradient is not finite")
    value = float(scale)
    k = rows.shape[0]
    if value == 0.0:
        return torch.zeros(k, k, dtype=torch.float64, device=rows.device)
    if rows.dtype == torch.float64 or 1e-15 <= value <= 1e15 / max(1, rows.shape[1]) ** 0.5:
        return (rows @ rows.T).to(torch.float64)  # no overflow/underflow: no copy needed
    unit = rows / scale
    return (unit @ unit.T).to(torch.float64) * scale.to(torch.float64) ** 2


def parameter_blocks(
    inputs: Sequence[Tensor], max_block_numel: int | None
) -> list[list[Tensor]]:
    """Consecutive groups of ``inputs`` of at most ``max_block_numel`` elements each
    (a single larger tensor forms its own block); one block when the bound is None."""
    if max_block_numel is None:
        return [list(inputs)]
    blocks: list[list[Tensor]] = []
    current: list[Tensor] = []
    size = 0
    for inp in inputs:
        n = inp.numel()
        if current and size + n > max_block_numel:
            blocks.append(current)
            current, size = [], 0
        current.append(inp)
        size += n
    if current:
        blocks.append(current)
    return blocks


def compute_gramian(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    chunk_size: int | None = None,
    max_block_numel: int | None = None,
) -> Tensor:
    """K×K Gramian ``J Jᵀ`` (float64) of the losses' gradients w.r.t. ``inputs``.

    The graph is kept (a weighted backward follows). With ``max_block_numel`` the
    Jacobian is never held whole: one block of inputs at a time is differentiated,
    folded into the Gramian and freed.
    """
    gram = None
    for block in parameter_blocks(inputs, max_block_numel):
        jac = compute_jacobian(losses, block, strategy, True, chunk_size)
        part = scaled_gram(jac)
        del jac
        gram = part if gram is None else gram + part
    if gram is None:
        k = len(losses)
        return torch.zeros(k, k, dtype=torch.float64)
    return gram


def leaf_parameters(loss: Tensor) -> list[Tensor]:
    """Every leaf tensor requiring grad that ``loss`` depends on, in graph order."""
    found: dict[int, Tensor] = {}
    seen: set[int] = set()
    stack = [loss.grad_fn] if loss.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.setdefault(id(variable), variable)
            continue
        stack.extend(child for child, _ in node.next_functions)
    return list(found.values())


def add_to_grad(params: Sequence[Tensor], flat: Tensor) -> None:
    """Add the flat vector ``flat`` to the ``.grad`` of ``params`` (like backward does)."""
    offset = 0
    for p in params:
        n = p.numel()
        piece = flat[offset : offset + n].view_as(p).to(p.dtype)
        offset += n
        if p.grad is None:
            p.grad = piece.clone()
        else:
            p.grad.add_(piece)
    if offset != flat.numel():
        raise ValueError(f"gradient of size {flat.numel()} for parameters of size {offset}")
