"""The Balancer contract: turn a dict of task losses into gradients.

Two families behind one interface, ``balancer.backward(losses, shared_params=...)``:

- :class:`LossWeighting` computes task weights from the losses (and their history)
  and does one backward of the weighted sum;
- :class:`GradientAggregator` combines per-task gradients (the K×P Jacobian of the
  shared parameters, its K×K Gramian, or the gradients of the shared representation)
  into one update, through the Jacobian engine.

Both fill ``.grad`` (adding to what is there, as ``Tensor.backward`` does) and return
a :class:`BalanceResult` with the task weights they used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..errors import NonFiniteLossError, PolytaskError
from . import engine


@dataclass
class BalanceResult:
    """What a balancer decided at one step.

    Attributes:
        weights: the weight of each task's loss (1.0 for a task the method leaves
            unweighted).
        extras: method diagnostics (e.g. cosine similarities), floats by name.
    """

    weights: dict[str, float]
    extras: dict[str, float] = field(default_factory=dict)


@dataclass
class BalanceContext:
    """Everything a balancer may use at one step."""

    names: list[str]
    losses: list[Tensor]
    shared_params: list[Tensor]
    task_params: dict[str, list[Tensor]] | None
    representation: Tensor | None
    step: int

    @property
    def loss_values(self) -> Tensor:
        """The losses as a detached K-vector."""
        return torch.stack([loss.detach() for loss in self.losses])


def _as_list(params: Iterable[Tensor] | Tensor | None) -> list[Tensor]:
    if params is None:
        return []
    if isinstance(params, Tensor):
        return [params]
    return [p for p in params if p.requires_grad]


_MODULE_INTERNALS = frozenset(nn.Module().__dict__) | {"step"}


class Balancer(nn.Module):
    """Base class of every balancing method (an ``nn.Module`` so that its learnable
    parameters, buffers and state go into ``state_dict`` and checkpoints)."""

    #: whether ``backward`` needs ``shared_params``
    needs_shared_params: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=True)
        self.task_names: list[str] | None = None

    def on_epoch_end(self, epoch: int, train_losses: Mapping[str, float]) -> None:
        """Called by the Trainer after each epoch with the epoch's mean train losses.

        Methods that update once per epoch (e.g. DWA) override it; in a plain loop,
        call it yourself at the end of each epoch.
        """

    def get_extra_state(self) -> dict:
        """The method's plain Python state (histories, EMA targets, RNGs, inner
        optimizers), so that checkpoints restore a balancer exactly."""
        state = {}
        for key, value in self.__dict__.items():
            if key in _MODULE_INTERNALS:
                continue
            if isinstance(value, torch.Generator):
                value = ("__torch_generator__", value.get_state())
            elif isinstance(value, torch.optim.Optimizer):
                value = ("__optimizer__", value.state_dict())
            state[key] = value
        return state

    def set_extra_state(self, state: dict) -> None:
        """Restore what :meth:`get_extra_state` saved."""
        for key, value in state.items():
            if isinstance(value, tuple) and len(value) == 2 and value[0] == "__torch_generator__":
                getattr(self, key).set_state(value[1])
            elif isinstance(value, tuple) and len(value) == 2 and value[0] == "__optimizer__":
                getattr(self, key).load_state_dict(value[1])
            else:
                setattr(self, key, value)

    def extra_parameters(self) -> list[nn.Parameter]:
        """The method's own learnable parameters (to give to an optimizer)."""
        return list(self.parameters())

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared_params: Iterable[Tensor] | None = None,
        task_params: Mapping[str, Iterable[Tensor]] | None = None,
        representation: Tensor | None = None,
    ) -> BalanceResult:
        """Fill ``.grad`` from the task ``losses``; return the weights used.

        Args:
            losses: ``{task: scalar loss}``; the same tasks in the same order each step.
            shared_params: the parameters every task uses (``model.shared_parameters()``).
            task_params: optional ``{task: its own parameters}``; found from the graph
                when omitted (gradient aggregation only).
            representation: the shared representation (``model.shared_representation``)
                for methods run on representation gradients.
        """
        ctx = self._context(losses, shared_params, task_params, representation)
        result = self._backward(ctx)
        self.step += 1
        return result

    def _context(self, losses, shared_params, task_params, representation) -> BalanceContext:
        if not isinstance(losses, Mapping) or not losses:
            raise PolytaskError("losses must be a non-empty dict {task name: scalar loss}")
        names = list(losses)
        values = []
        for name in names:
            loss = losses[name]
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
                raise PolytaskError(f"loss of task {name!r} must be a scalar tensor, got {shape}")
            values.append(loss.reshape(()))
        finite = torch.isfinite(torch.stack([v.detach() for v in values]))
        if not bool(finite.all()):
            bad = [n for n, ok in zip(names, finite.tolist()) if not ok]
            raise NonFiniteLossError(
                f"non-finite loss for task(s) {bad} at balancer step {int(self.step)}: "
                + ", ".join(f"{n}={float(losses[n].detach()):.4g}" for n in bad)
            )
        if self.task_names is None:
            self.task_names = names
        elif self.task_names != names:
            raise PolytaskError(
                f"tasks changed between steps: first {self.task_names}, now {names}"
            )
        shared = _as_list(shared_params)
        if self.needs_shared_params and not shared:
            raise PolytaskError(
                f"{type(self).__name__} needs shared_params=model.shared_parameters()"
            )
        own = None
        if task_params is not None:
            missing = set(names) - set(task_params)
            if missing:
                raise PolytaskError(f"task_params lacks tasks {sorted(missing)}")
            own = {name: _as_list(task_params[name]) for name in names}
        return BalanceContext(names, values, shared, own, representation, int(self.step))

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        raise NotImplementedError


class LossWeighting(Balancer):
    """Weights from the losses, then one backward of the weighted sum.

    Subclasses implement :meth:`weights` (detached weights, K) or, when the weights
    are learned through the loss itself, :meth:`combine`.
    """

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        """The K task weights for the detached loss values ``losses``."""
        raise NotImplementedError

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        """(the scalar to differentiate, the K weights used)."""
        w = self.weights(ctx.loss_values, ctx).detach()
        total = sum(wk * loss for wk, loss in zip(w, ctx.losses))
        return total, w

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        total, w = self.combine(ctx)
        if total.requires_grad:
            total.backward()
        return BalanceResult(dict(zip(ctx.names, w.detach().tolist())))


PATHS = ("auto", "jacobian", "gramian", "representation")


class GradientAggregator(Balancer):
    """Combines per-task gradients into one update.

    A subclass gives its combination rule as a pure function:

    - :meth:`weights_from_gramian` when the update is a weighted sum of the task
      gradients whose weights depend only on the K×K Gramian ``G = J Jᵀ`` (then
      ``gramian_based = True`` and ``aggregate(J) = w(JJᵀ) @ J``);
    - otherwise :meth:`aggregate` on the K×P Jacobian itself.

    The engine path (``path=``) is ``"auto"`` (the Gramian when the method allows it,
    else the Jacobian), ``"jacobian"``, ``"gramian"`` or ``"representation"``
    (gradients w.r.t. the shared representation instead of the shared parameters; the
    cheap "-ub" variant). ``strategy`` picks how the Jacobian is computed (``"loop"``
    or ``"batched"``), ``chunk_size`` bounds the tasks per batched call.

    Shared parameters receive the aggregated direction. Task-specific parameters
    receive ``w_k ∇L_k`` (``w_k = 1`` for methods that yield no weights).
    """

    needs_shared_params = True
    gramian_based: ClassVar[bool] = False

    def __init__(
        self, path: str = "auto", strategy: str = "loop", chunk_size: int | None = None
    ) -> None:
        super().__init__()
        if path not in PATHS:
            raise ValueError(f"unknown path {path!r}; available: {PATHS}")
        if strategy not in engine.STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; available: {engine.STRATEGIES}")
        if path == "gramian" and not self.gramian_based:
            raise ValueError(
                f"{type(self).__name__} needs the full Jacobian: path='gramian' is not available"
            )
        self.path = path
        self.strategy = strategy
        self.chunk_size = chunk_size
        self._last_weights: Tensor | None = None

    # -- the combination rule -----------------------------------------------------
    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        """The K weights of the task gradients, from the K×K Gramian."""
        raise NotImplementedError

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The update direction (P) from the K×P Jacobian. Pure but for method state."""
        if not self.gramian_based:
            raise NotImplementedError
        w = self.weights_from_gramian(jacobian @ jacobian.T)
        self._last_weights = w
        return w @ jacobian

    # -- the engine ---------------------------------------------------------------
    def resolved_path(self) -> str:
        """The path ``backward`` takes."""
        if self.path == "auto":
            return "gramian" if self.gramian_based else "jacobian"
        return self.path

    def _other_params(self, ctx: BalanceContext) -> list[list[Tensor]]:
        """Per task: the non-shared parameters its loss reaches."""
        shared_ids = {id(p) for p in ctx.shared_params}
        if ctx.task_params is not None:
            return [[p for p in ctx.task_params[n] if id(p) not in shared_ids] for n in ctx.names]
        return [
            [p for p in engine.leaf_parameters(loss) if id(p) not in shared_ids]
            for loss in ctx.losses
        ]

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        path = self.resolved_path()
        self._last_weights = None
        if path == "representation":
            return self._backward_representation(ctx)
        if not ctx.shared_params:
            raise PolytaskError(f"{type(self).__name__} needs shared_params")
        if path == "gramian":
            jac = engine.compute_jacobian(
                ctx.losses, ctx.shared_params, self.strategy, True, self.chunk_size
            )
            gramian = jac @ jac.T
            del jac
            w = self.weights_from_gramian(gramian)
            return self._weighted_backward(ctx, w)
        return self._backward_jacobian(ctx)

    def _weighted_backward(self, ctx: BalanceContext, w: Tensor) -> BalanceResult:
        w = w.detach()
        total = sum(wk * loss for wk, loss in zip(w, ctx.losses))
        if total.requires_grad:
            total.backward()
        return BalanceResult(dict(zip(ctx.names, w.tolist())))

    def _backward_jacobian(self, ctx: BalanceContext) -> BalanceResult:
        others = self._other_params(ctx)
        union: dict[int, Tensor] = {}
        for group in others:
            for p in group:
                union.setdefault(id(p), p)
        other_list = list(union.values())
        inputs = ctx.shared_params + other_list
        jac = engine.compute_jacobian(
            ctx.losses, inputs, self.strategy, False, self.chunk_size
        )
        n_shared = sum(p.numel() for p in ctx.shared_params)
        direction = self.aggregate(jac[:, :n_shared])
        engine.add_to_grad(ctx.shared_params, direction)
        w = self._last_weights
        if w is None:
            w = torch.ones(len(ctx.losses), device=jac.device, dtype=jac.dtype)
        if other_list:
            engine.add_to_grad(other_list, w.detach() @ jac[:, n_shared:])
        return BalanceResult(dict(zip(ctx.names, w.detach().tolist())))

    def _backward_representation(self, ctx: BalanceContext) -> BalanceResult:
        rep = ctx.representation
        if rep is None or not rep.requires_grad:
            raise PolytaskError(
                f"{type(self).__name__}(path='representation') needs representation="
                "model.shared_representation (a tensor in the graph)"
            )
        jac = engine.compute_jacobian(ctx.losses, [rep], self.strategy, True, self.chunk_size)
        if self.gramian_based:
            return self._weighted_backward(ctx, self.weights_from_gramian(jac @ jac.T))
        direction = self.aggregate(jac).view_as(rep)
        others = self._other_params(ctx)
        union = list({id(p): p for group in others for p in group}.values())
        if union:
            torch.autograd.backward(sum(ctx.losses), inputs=union, retain_graph=True)
        torch.autograd.backward(rep, grad_tensors=direction, inputs=ctx.shared_params)
        ones = [1.0] * len(ctx.names)
        return BalanceResult(dict(zip(ctx.names, ones)))

