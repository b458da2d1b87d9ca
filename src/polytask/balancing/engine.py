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

:func:`compute_gramian` gives the K×K Gramian ``J Jᵀ`` (float64) without holding
the whole Jacobian, in one of two ways:

- by products (default): for a chunk C of tasks, the rows ``J_C`` (|C|×P) are
  computed, then the Gramian's columns ``G[:, C] = J J_Cᵀ`` by Jacobian-vector
  products, i.e. a backward through the backward of ``Σ_k w_k L_k`` w.r.t. a dummy
  ``w`` (``∂⟨Jᵀw, v⟩/∂w = J v``). Peak extra memory is |C| task gradients (one, in
  the loop strategy without ``chunk_size``) plus the graph of one backward, whatever
  K is; the price is one extra backward through the backward per task;
- by blocks (``max_block_numel``): walks the inputs in blocks of at most that many
  elements, computes the K×|block| Jacobian of one block, folds it into the Gramian
  and frees it. Peak extra memory is K × the largest block; the price is one
  backward per block, each going from the losses down to that block only. Needs no
  double backward, so it is also the fallback for operators without one.

Under ``torch.distributed`` (initialised, more than one process), what the engine
computes from the shared parameters is averaged across ranks before any rule sees it
(``reduce=True``): the Jacobian, its blocks, or the product path's rows and columns.
With each rank's loss the mean over an equal share of the batch, every rank then
holds the Jacobian (and Gramian) of the whole batch, so all ranks compute the same
weights and the update equals one process's on the whole batch.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import torch
from torch import Tensor

from ..errors import PolytaskError

STRATEGIES = ("loop", "batched")


def world_size() -> int:
    """Processes in the default ``torch.distributed`` group (1 when not initialised)."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def average_across_ranks(tensor: Tensor) -> Tensor:
    """``tensor`` averaged in place over the ranks of ``torch.distributed`` (unchanged
    in a single process); returns it."""
    size = world_size()
    if size > 1:
        torch.distributed.all_reduce(tensor)
        tensor /= size
    return tensor


def sum_across_ranks(tensor: Tensor) -> Tensor:
    """``tensor`` summed in place over the ranks (unchanged in one process); returns it.
    For statistics that add up (loss sums, label counts, metric states)."""
    if world_size() > 1:
        torch.distributed.all_reduce(tensor)
    return tensor


#: set by a caller whose own machinery averages the final gradients (a model wrapped
#: in ``DistributedDataParallel``, Lightning's emission): the engine then averages
#: only what the rules read, not what the balancer writes to ``.grad``
_CALLER_AVERAGES: ContextVar[bool] = ContextVar("polytask_caller_averages", default=False)


@contextmanager
def caller_averages_gradients() -> Iterator[None]:
    """Within this block the engine does not average the gradients a balancer writes
    (its weighted backward): the caller does, e.g. DDP's hooks on a loss weighting's
    ordinary backward. What rules read (loss values, Jacobian, Gramian) is still
    averaged."""
    token = _CALLER_AVERAGES.set(True)
    try:
        yield
    finally:
        _CALLER_AVERAGES.reset(token)


def averages_writes() -> bool:
    """Whether the engine averages the gradients a balancer writes across ranks: under
    ``torch.distributed`` with more than one rank, unless the caller does
    (:func:`caller_averages_gradients`)."""
    return world_size() > 1 and not _CALLER_AVERAGES.get()


def backward_averaged(total: Tensor, params: Sequence[Tensor], retain_graph: bool) -> None:
    """Add ``∂total/∂params``, averaged across ranks, to ``.grad``: one backward and
    one all-reduce of the reached parameters' gradients (what DDP does after an
    ordinary backward). Parameters ``total`` does not reach keep ``.grad`` untouched,
    as ``Tensor.backward`` leaves them (every rank has the same graph, so the same
    parameters are reached on each)."""
    if not params:
        return
    grads = gradient(total, list(params), retain_graph=retain_graph, materialize=False)
    reached = [(p, g) for p, g in zip(params, grads) if g is not None]
    if not reached:
        return
    flat = torch.cat([g.reshape(-1) for _, g in reached])
    add_to_grad([p for p, _ in reached], average_across_ranks(flat))


def rank_loss_factors(counts: Sequence[float] | Tensor, device: torch.device | str = "cpu"
                      ) -> Tensor:
    """Factors that make the ranks' mean losses combine into the whole batch's.

    ``counts[k]``: how many labeled entries task k's loss on this rank averages over.
    The whole batch's loss is ``Σ_r n_r L_r / Σ_r n_r``, not the mean of the ranks'
    means when the ranks hold different numbers of labels (missing labels, masks); the
    engine averages across ranks, so rank r's loss is multiplied by
    ``R n_r / Σ_r n_r`` (one all-reduce of K numbers). A task with no label on any
    rank gets factor 1 (its losses are 0). Ones in a single process.
    """
    n = torch.as_tensor(counts, dtype=torch.float64, device=device).reshape(-1)
    size = world_size()
    if size == 1:
        return torch.ones_like(n)
    total = sum_across_ranks(n.clone())
    return torch.where(total > 0, size * n / total.clamp(min=1e-300), torch.ones_like(n))


def gather_objects(value: object) -> list:
    """``value`` from every rank, in rank order (``[value]`` in one process)."""
    if world_size() == 1:
        return [value]
    gathered: list = [None] * world_size()
    torch.distributed.all_gather_object(gathered, value)
    return gathered


#: balancers whose task names were compared across ranks in this process
_TASKS_CHECKED: weakref.WeakSet = weakref.WeakSet()


def check_same_tasks(owner: object, names: Sequence[str]) -> None:
    """Under ``torch.distributed``, raise on every rank when the ranks disagree on the
    task names (or their order), naming the tasks: every later reduction would mix
    different tasks' values or hang. Done once per ``owner`` (a balancer) per process."""
    if world_size() == 1 or owner in _TASKS_CHECKED:
        return
    gathered = gather_objects(list(names))
    _TASKS_CHECKED.add(owner)
    if any(g != list(names) for g in gathered):
        mine = list(names)
        parts = []
        for rank, g in enumerate(gathered):
            extra = [n for n in g if n not in mine]
            lacks = [n for n in mine if n not in g]
            if g != mine:
                detail = (f"extra {extra}, lacks {lacks}" if extra or lacks
                          else "the same tasks in another order")
                parts.append(f"rank {rank} has {g} ({detail})")
        raise PolytaskError(
            f"{type(owner).__name__}: the ranks disagree on the task set; rank "
            f"{torch.distributed.get_rank()} has {mine}, " + "; ".join(parts)
            + ". Every rank must give backward() the same tasks in the same order "
            "(a task without labels on a rank still needs its loss, 0)"
        )


_warned_fallback = False
_warned_double_backward = False


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

    The product is formed directly when it is safe: float64 rows, or a float32
    product that is finite and whose diagonal (each row's squared norm) is either 0
    or well above float32's underflow (then no entry lost precision); the check reads
    the K×K result only, not the K×P rows. Otherwise the rows are divided by their
    largest absolute entry before the product and the square of that scale is put
    back in float64, so gradients of 1e±30 give a finite, exact-to-rounding Gramian.
    """
    rows = rows.detach()
    k = rows.shape[0]
    if rows.dtype == torch.float64 and rows.numel():
        gram = rows @ rows.T
        if bool(torch.isfinite(gram).all()):
            return gram
    elif rows.numel() and rows.is_floating_point():
        gram = rows @ rows.T
        # the checks read a float64 host copy of the K×K result (one transfer, NumPy:
        # microseconds, where a handful of tiny tensor ops cost more than the rule)
        host = gram.to("cpu", torch.float64).numpy()
        diag = np.diagonal(host)
        floor = float(torch.finfo(rows.dtype).tiny) * 2**40
        ok = np.isfinite(host).all()
        if ok and not diag.min() > floor:  # a zero or tiny squared norm (the rare case)
            zero = diag == 0  # a zero squared norm must mean a zero row, not underflow
            ok = (zero | (diag > floor)).all() and (
                not zero.any() or bool((rows[torch.from_numpy(zero).to(rows.device)] == 0).all())
            )
        if ok:
            return torch.from_numpy(host) if rows.device.type == "cpu" else (gram.to(torch.float64))
    scale = rows.abs().amax() if rows.numel() else rows.new_zeros(())
    if not bool(torch.isfinite(scale)):
        raise FloatingPointError("a task gradient is not finite")
    value = float(scale)
    if value == 0.0:
        return torch.zeros(k, k, dtype=torch.float64, device=rows.device)
    if rows.dtype == torch.float64 or 1e-15 <= value <= 1e15 / max(1, rows.shape[1]) ** 0.5:
        return (rows @ rows.T).to(torch.float64)  # no overflow/underflow: no copy needed
    unit = rows / scale
    return (unit @ unit.T).to(torch.float64) * scale.to(torch.float64) ** 2


def parameter_blocks(inputs: Sequence[Tensor], max_block_numel: int | None) -> list[list[Tensor]]:
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


def gramian_by_blocks(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    chunk_size: int | None = None,
    max_block_numel: int | None = None,
    reduce: bool = False,
) -> Tensor:
    """K×K Gramian (float64), one block of at most ``max_block_numel`` input elements
    at a time (all inputs at once when None): the K×|block| Jacobian of each block is
    folded into the Gramian and freed before the next. The graph is kept. With
    ``reduce``, each block is averaged across ranks first."""
    gram = None
    for block in parameter_blocks(inputs, max_block_numel):
        jac = compute_jacobian(losses, block, strategy, True, chunk_size)
        if reduce:
            average_across_ranks(jac)
        part = scaled_gram(jac)
        del jac
        gram = part if gram is None else gram + part
    if gram is None:
        k = len(losses)
        return torch.zeros(k, k, dtype=torch.float64)
    return gram


def gramian_by_products(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    chunk_size: int | None = None,
    reduce: bool = False,
    rtol: float = 1e-3,
) -> Tensor:
    """K×K Gramian (float64) by Jacobian-vector products, holding at most
    ``chunk_size`` task gradients (1 when None) at once. The graph is kept.

    ``u(w) = Jᵀ w`` is the backward of ``Σ_k w_k L_k`` with ``create_graph=True``; it
    is linear in the dummy ``w``, so ``∂⟨u, v⟩/∂w = J v`` for any ``v``. With ``v`` the
    gradients of a chunk of tasks this gives the chunk's columns of ``J Jᵀ``. Each
    chunk of rows is divided by its largest entry before the product (the scale is
    put back in float64), so tiny gradients do not underflow. Raises ``RuntimeError``
    when an operator of the graph has no double backward. With ``reduce``, rows and
    columns are averaged across ranks (the Gramian of the whole batch's Jacobian).
    ``rtol``: how far each task's squared norm from the products may be from its row's
    (the check that catches an operator without double backward); larger for a graph
    in half precision (autocast), whose two computations round apart.
    """
    k = len(losses)
    gram = torch.zeros(k, k, dtype=torch.float64)
    stacked = torch.stack(list(losses))
    if not stacked.requires_grad or not inputs:
        return gram
    dummy = torch.ones(k, dtype=stacked.dtype, device=stacked.device, requires_grad=True)
    grads = torch.autograd.grad(
        stacked, inputs, grad_outputs=dummy, create_graph=True, allow_unused=True
    )
    reached = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    if not reached:
        return gram
    u = [grads[i] for i in reached]
    sizes = [inputs[i].numel() for i in reached]
    used = [inputs[i] for i in reached]
    del grads
    chunk = max(1, chunk_size or 1)
    batched = strategy == "batched" and chunk > 1
    for start in range(0, k, chunk):
        rows = compute_jacobian(
            list(losses[start : start + chunk]), used, strategy, True, chunk_size
        )
        if reduce:
            average_across_ranks(rows)
        scale = rows.abs().amax()
        if not bool(torch.isfinite(scale)):
            raise FloatingPointError("a task gradient is not finite")
        if float(scale) == 0.0:
            continue
        rows = rows / scale
        pieces = [
            r.view(rows.shape[0], *inp.shape) for r, inp in zip(rows.split(sizes, dim=1), used)
        ]
        if batched:
            (cols,) = torch.autograd.grad(
                u,
                dummy,
                grad_outputs=pieces,
                retain_graph=True,
                is_grads_batched=True,
                allow_unused=True,
                materialize_grads=True,
            )
        else:
            cols = torch.stack(
                [
                    torch.autograd.grad(
                        u,
                        dummy,
                        grad_outputs=[p[j] for p in pieces],
                        retain_graph=True,
                        materialize_grads=True,
                    )[0]
                    for j in range(rows.shape[0])
                ]
            )
        if reduce:
            average_across_ranks(cols)
        # An operator whose backward is not differentiable (e.g. ``once_differentiable``)
        # can drop its share of J v without an error; each task's own squared norm,
        # known from its row, catches it.
        expected = rows.double().square().sum(dim=1) * float(scale)  # rows are unit-scaled
        got = cols.double()[torch.arange(cols.shape[0]), start + torch.arange(cols.shape[0])]
        if bool(((got - expected).abs() > rtol * expected + 1e-9 * expected.max()).any()):
            raise RuntimeError(
                "Jacobian-vector products disagree with the task gradients' norms "
                "(an operator of the graph has no double backward)"
            )
        del rows, pieces
        gram[:, start : start + cols.shape[0]] = cols.T.to(torch.float64).cpu() * float(scale)
    gram = 0.5 * (gram + gram.T)
    return gram.to(stacked.device)


def compute_gramian(
    losses: Sequence[Tensor],
    inputs: Sequence[Tensor],
    strategy: str = "loop",
    chunk_size: int | None = None,
    max_block_numel: int | None = None,
    reduce: bool = False,
    rtol: float = 1e-3,
) -> Tensor:
    """K×K Gramian ``J Jᵀ`` (float64) of the losses' gradients w.r.t. ``inputs``,
    never holding the whole K×P Jacobian (averaged across ranks with ``reduce``).

    By blocks of inputs when ``max_block_numel`` is given, else by Jacobian-vector
    products in chunks of ``chunk_size`` tasks (see the module docstring); when the
    graph has an operator without double backward, warns once and uses blocks of one
    input tensor. The graph is kept (a weighted backward follows).
    """
    global _warned_double_backward
    if max_block_numel is not None:
        return gramian_by_blocks(losses, inputs, strategy, chunk_size, max_block_numel, reduce)
    try:
        return gramian_by_products(losses, inputs, strategy, chunk_size, reduce, rtol)
    except RuntimeError as error:
        if not _warned_double_backward:
            warnings.warn(
                f"Gramian by Jacobian-vector products failed ({str(error).splitlines()[0]}); "
                "computing it one parameter tensor at a time instead",
                RuntimeWarning,
                stacklevel=3,
            )
            _warned_double_backward = True
        return gramian_by_blocks(losses, inputs, strategy, chunk_size, 1, reduce)


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


def gradient(
    output: Tensor,
    inputs: Sequence[Tensor],
    grad_output: Tensor | None = None,
    retain_graph: bool = False,
    materialize: bool = True,
) -> list[Tensor | None]:
    """The gradient (vector-Jacobian product with ``grad_output``) of ``output`` w.r.t.
    each of ``inputs``, zeros for an input it does not reach: the engine's entry for
    a method's gradient of one objective (GradNorm's ``L_grad`` w.r.t. its weights,
    FAMO's logit step, Auto-Lambda's validation loss at the virtual parameters). With
    ``materialize=False`` an input not reached gets None instead of zeros."""
    grads = torch.autograd.grad(
        output, list(inputs), grad_outputs=grad_output, retain_graph=retain_graph,
        allow_unused=True,
    )
    if not materialize:
        return list(grads)
    return [torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs)]


def backward_from(
    tensors: Tensor | Sequence[Tensor],
    grad_tensors: Tensor | Sequence[Tensor] | None = None,
    inputs: Sequence[Tensor] | None = None,
    retain_graph: bool = False,
) -> None:
    """``torch.autograd.backward``: add the vector-Jacobian product of ``tensors`` with
    ``grad_tensors`` to the ``.grad`` of the leaves (of ``inputs`` only, when given);
    the engine's entry for every backward a balancer runs."""
    torch.autograd.backward(
        tensors, grad_tensors=grad_tensors,
        inputs=list(inputs) if inputs is not None else None, retain_graph=retain_graph,
    )


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
