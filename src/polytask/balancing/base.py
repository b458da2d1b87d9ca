"""The Balancer contract: turn a dict of task losses into gradients.

Two families behind one interface, ``balancer.backward(losses, shared_params=...)``:

- :class:`LossWeighting` computes task weights from the losses (and their history)
  and does one backward of the weighted sum;
- :class:`GradientAggregator` combines per-task gradients (the K×P Jacobian of the
  shared parameters, its K×K Gramian, or the gradients of the shared representation)
  into one update, through the Jacobian engine.

Both fill ``.grad`` (adding to what is there, as ``Tensor.backward`` does) and return
a :class:`BalanceResult` with the task weights they used.

A task whose loss is exactly 0 at a step (typically: no sample of the batch has its
label, so its masked loss is 0 and its gradient is zero) is *dead* at that step
(``BalanceContext.live``): it drops out of that step's balancing (no method lets a
zero loss or a zero gradient change the other tasks' weights) and its reported weight
is 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from .. import params
from ..errors import NonFiniteLossError, PolytaskError
from . import engine, protocol, scaling


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

    _loss_values: Tensor | None = field(default=None, repr=False)

    @property
    def live(self) -> Tensor:
        """Boolean K-vector: the tasks whose loss is not exactly 0 at this step (under
        ``torch.distributed``, on the whole batch). A dead task (no label in the batch)
        drops out of this step's balancing."""
        return self.loss_values != 0

    @property
    def loss_values(self) -> Tensor:
        """The losses as a detached K-vector (under ``torch.distributed``, averaged
        across ranks: the whole batch's losses, the same on every rank)."""
        if self._loss_values is None:
            values = torch.stack([loss.detach() for loss in self.losses])
            self._loss_values = engine.average_across_ranks(values)
        return self._loss_values


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
    #: whether ``backward(..., grad_scale=...)`` is honoured (float16 loss scaling,
    #: :mod:`polytask.balancing.scaling`); a method that is not raises naming the fix
    supports_grad_scale: ClassVar[bool] = True
    #: whether the method needs the same batch's losses after ``optimizer.step()``
    #: (given through :meth:`on_step_end`; the Trainer then does one extra forward)
    needs_losses_after_step: ClassVar[bool] = False
    #: what a call needs beyond default settings and a Jacobian: "settings" (a setting
    #: without a default, e.g. Pareto MTL's rays) and/or "losses" (the current losses,
    #: which ``aggregate(J)`` alone does not give). Registry-wide tests that build a
    #: method with its defaults or call ``aggregate`` on a bare Jacobian leave such a
    #: method to its own tests.
    requires: ClassVar[tuple[str, ...]] = ()
    #: constraints of the constructor's settings (:mod:`polytask.params`), merged
    #: along the class hierarchy and checked on construction
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Check every construction's settings against the class's declared table."""
        super().__init_subclass__(**kwargs)
        params.validate_on_init(cls)

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("step", torch.zeros((), dtype=torch.long), persistent=True)
        self.task_names: list[str] | None = None

    def prepare(self, task_names: Sequence[str]) -> None:
        """Create per-task state (e.g. learned weights) before an optimizer is built.

        The Trainer calls it with the task names; the default does nothing.
        """

    def attach(self, **context: Any) -> Balancer:
        """Receive the training context the Trainer has (``model``, ``optimizer``,
        ``loader``, ``tasks``, ``primary``, ``device``); methods that need more than the
        losses (e.g. Auto-Lambda's lookahead) override it. The default does nothing."""
        return self

    def on_epoch_end(
        self, epoch: int | None = None, train_losses: Mapping[str, float] | None = None
    ) -> None:
        """Called after each epoch (the Trainer passes the epoch's mean train losses).

        Methods that update once per epoch (e.g. DWA, STCH's warm-up) override it and
        use the losses they saw in ``backward``; in a plain loop, call
        ``balancer.on_epoch_end(epoch)`` at the end of each epoch, for every method.
        """

    def on_step_end(self, losses_after: Mapping[str, Tensor] | Tensor | None = None) -> None:
        """Called after ``optimizer.step()``. When ``needs_losses_after_step`` is True,
        with the same batch's task losses at the new parameters (``{task: loss}``,
        no graph needed); the Trainer does that extra forward pass. The default does
        nothing; in a plain loop, call it yourself for such methods."""

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
        grad_scale: Any = None,
    ) -> BalanceResult:
        """Fill ``.grad`` from the task ``losses``; return the weights used.

        Args:
            losses: ``{task: scalar loss}``; the same tasks in the same order each step.
            shared_params: the parameters every task uses (``model.shared_parameters()``).
            task_params: optional ``{task: its own parameters}``; found from the graph
                when omitted (gradient aggregation only).
            representation: the shared representation (``model.shared_representation``)
                for methods run on representation gradients.
            grad_scale: float16 loss scaling: a ``torch.amp.GradScaler`` (its current
                scale is read) or a number ``s``. Every backward is seeded with ``s``,
                the rule reads the per-task gradients divided by ``s`` (so the weights
                are those of the unscaled gradients), and ``.grad`` receives ``s ×``
                the update, for ``scaler.step(optimizer)`` to unscale and check (see
                :mod:`polytask.balancing.scaling`). Per-task gradients that overflow
                skip the rule and leave inf in ``.grad``, so the scaler skips the step.
        """
        ctx = self._context(losses, shared_params, task_params, representation)
        protocol.check_step(self, ctx)  # a plain loop's mistakes, at the first steps
        scale = scaling.resolve(grad_scale, ctx.losses[0].device)
        if scale is not None and not self.supports_grad_scale:
            raise PolytaskError(
                f"{type(self).__name__} does not support float16 loss scaling "
                "(grad_scale=...): its gradient reads do not go through "
                "polytask.balancing.scaling. Train it with precision='bf16' (no scaler "
                "needed) or '32', or pick another method for fp16"
            )
        with scaling.active(scale):
            try:
                result = self._backward(ctx)
            except scaling.GradientOverflow:
                result = self._gradient_overflow(ctx)
        live = ctx.live.tolist()
        if not all(live):  # dead tasks (loss exactly 0) report weight 0, whatever the method
            for name, ok in zip(ctx.names, live):
                if not ok and name in result.weights:
                    result.weights[name] = 0.0
        self.step += 1
        return result

    def _gradient_overflow(self, ctx: BalanceContext) -> BalanceResult:
        """Per-task gradients overflowed under a loss scale: no rule runs, ``.grad``
        is made non-finite so that ``scaler.step`` skips the step."""
        scaling.mark_overflow(ctx.shared_params, ctx.losses)
        return BalanceResult(dict.fromkeys(ctx.names, 1.0), {"grad_overflow": 1.0})

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
        engine.check_same_tasks(self, names)  # under torch.distributed, once
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


def surrogate(losses: Tensor, weights: Tensor, value: Tensor) -> Tensor:
    """``Σ_k w_k L_k`` with the value ``value``: the scalar a loss weighting whose
    objective ``f(L)`` is nonlinear differentiates once ``w = ∂f/∂L`` has been taken
    at the engine's loss values (under ``torch.distributed`` the whole batch's, where
    differentiating ``f`` of a rank's own losses would not give the whole batch's
    gradient). In one process its gradient is ``f``'s own."""
    weighted = (weights.detach().to(losses) * losses).sum()
    return weighted + (value.detach().to(weighted) - weighted.detach())


class LossWeighting(Balancer):
    """Weights from the losses, then one backward of the weighted sum.

    Subclasses implement :meth:`weights` (detached weights, K) or, when the weights
    are learned through the loss itself, :meth:`combine`.
    """

    #: whether the written gradient is ``Σ_k w_k ∇L_k`` with the reported weights
    #: (checked for every registered weighting by the property tests)
    reports_loss_weights: ClassVar[bool] = True

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        """The K task weights for the detached loss values ``losses``."""
        raise NotImplementedError

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        """(the scalar to differentiate, the K weights used)."""
        w = self.weights(ctx.loss_values, ctx).detach()
        w = w.masked_fill(~ctx.live.to(w.device), 0.0)
        total = sum(wk * loss for wk, loss in zip(w, ctx.losses))
        return total, w

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        total, w = self.combine(ctx)
        if isinstance(total, Tensor) and total.requires_grad:
            scaling.backward(total)
        w = w.detach().masked_fill(~ctx.live.to(w.device), 0.0)  # dead tasks: weight 0
        return BalanceResult(dict(zip(ctx.names, w.tolist())))


PATHS = ("auto", "jacobian", "gramian", "representation")
TASK_GRADIENTS = ("weighted", "raw")


class GradientAggregator(Balancer):
    """Combines per-task gradients into one update.

    A subclass gives its combination rule as a pure function (plus its own small state):

    - :meth:`weights_from_gramian` when the update is a weighted sum of the task
      gradients whose weights depend only on the K×K Gramian ``G = J Jᵀ`` (then
      ``gramian_based = True`` and ``aggregate(J) = w(JJᵀ) @ J``);
    - otherwise :meth:`aggregate` on the K×P Jacobian itself.

    Rules may read ``self.current_losses`` (the detached K losses) and
    ``self.current_activation`` (the detached shared representation, on the
    representation path) and write diagnostics into ``self.extras``.

    Engine paths (``path=``), all giving the same update for a Gramian-based method:

    - ``"jacobian"``: the K×P Jacobian of the shared parameters (``strategy`` ``"loop"``
      or ``"batched"``, ``chunk_size`` tasks per batched call), then the rule;
    - ``"gramian"``: only the K×K Gramian, then one backward of ``Σ w_k L_k``. The
      whole Jacobian is used when it fits ``jacobian_memory_limit`` bytes; otherwise
      the Gramian is built by Jacobian-vector products holding only as many task
      gradients as fit the limit (at least one; ``chunk_size`` sets the number), or,
      with ``max_block_numel``, from blocks of at most that many parameters;
    - ``"representation"``: gradients w.r.t. the shared representation instead (the
      cheap "-ub" variant), backpropagated through the shared encoder;
    - ``"auto"`` (default): ``"gramian"`` for Gramian-based methods whose full Jacobian
      would exceed ``jacobian_memory_limit`` bytes, else ``"jacobian"`` (one backward
      cheaper than the Gramian path).

    Shared parameters receive the aggregated direction. Task-specific parameters
    receive, with ``task_gradients="weighted"``, ``Σ_k w_k ∇L_k`` (``w_k = 1`` for
    methods that yield no weights), or with ``"raw"`` each task's own ``∇L_k``.
    Reference codes differ here; each method's default (``default_task_gradients``)
    follows its reference and its docstring says which; ``task_gradients=`` overrides.

    Dead tasks (loss exactly 0): for methods with ``restrict_to_live`` the rule runs on
    the live tasks' Gramian only; for the others a dead task's zero gradient already
    drops out of the rule (the shared :func:`active_tasks` test); either way its
    weight is 0.

    Under ``torch.distributed`` the engine averages the Jacobian (or Gramian) and the
    loss values across ranks, and the gradients of the weighted backward too, so each
    rank gets the update of the whole batch (use the plain model, not DDP).
    """

    needs_shared_params = True
    gramian_based: ClassVar[bool] = False
    #: what task-specific parameters receive by default: "weighted" or "raw"
    default_task_gradients: ClassVar[str] = "weighted"
    #: whether dead tasks are removed from the Gramian before the rule runs
    restrict_to_live: ClassVar[bool] = False
    #: how the update transforms when the Jacobian is scaled by s > 0:
    #: "homogeneous" (d(sJ) = s d(J)), "invariant" (d(sJ) = d(J)) or "none"
    scaling: ClassVar[str] = "homogeneous"
    #: defining properties the registry-wide property tests check on every input
    #: family (names from tests/balancing/test_properties.py: "non_conflicting",
    #: "min_norm", "equal_projections", "equal_cosines", "nash", "fair", "cagrad")
    properties: ClassVar[tuple[str, ...]] = ()
    #: whether the rule draws random numbers (then it is not tested for
    #: permutation equivariance)
    random: ClassVar[bool] = False
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "path": [params.Options(PATHS)],
        "strategy": [params.Options(engine.STRATEGIES)],
        "chunk_size": [None, params.Interval(params.Integral, 1, None)],
        "max_block_numel": [None, params.Interval(params.Integral, 1, None)],
        "jacobian_memory_limit": [params.Interval(params.Integral, 0, None)],
        "task_gradients": [None, params.Options(TASK_GRADIENTS)],
    }

    def __init__(
        self,
        path: str = "auto",
        strategy: str = "loop",
        chunk_size: int | None = None,
        max_block_numel: int | None = None,
        jacobian_memory_limit: int = 256 * 2**20,
        task_gradients: str | None = None,
    ) -> None:
        super().__init__()
        if task_gradients is not None and task_gradients not in TASK_GRADIENTS:
            raise ValueError(
                f"unknown task_gradients {task_gradients!r}; available: {TASK_GRADIENTS}"
            )
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
        self.max_block_numel = max_block_numel
        self.jacobian_memory_limit = int(jacobian_memory_limit)
        self.task_gradients = task_gradients or self.default_task_gradients
        self._last_weights: Tensor | None = None
        self.current_losses: Tensor | None = None
        self.current_activation: Tensor | None = None
        #: boolean K-vector of the live tasks at this step (None: all live)
        self.current_live: Tensor | None = None
        #: while the rule runs on the live tasks only: their indices among all tasks
        #: (for per-task hyper-parameters such as preferences), else None
        self.current_index: Tensor | None = None
        #: machine epsilon of the gradients the Gramian was computed from
        self.precision: float = float(torch.finfo(torch.float64).eps)
        self.extras: dict[str, float] = {}

    # -- the combination rule -----------------------------------------------------
    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        """The K weights of the task gradients, from the K×K Gramian."""
        raise NotImplementedError

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """The update direction (P) from the K×P Jacobian. Pure but for method state."""
        if not self.gramian_based:
            raise NotImplementedError
        self.precision = float(torch.finfo(jacobian.dtype).eps)
        w = self._rule_weights(engine.scaled_gram(jacobian))
        return w.to(jacobian.dtype) @ jacobian

    def precomputed_weights(self, ctx: BalanceContext) -> Tensor | None:
        """Weights known without any gradient this step (e.g. reused from an earlier
        step, or random), or None. When given, the engine does one weighted backward."""
        return None

    def after_backward(self, ctx: BalanceContext) -> None:
        """Called once ``.grad`` is filled (e.g. to clip the shared gradient)."""

    def _dead(self, k: int) -> Tensor | None:
        """Boolean K-vector of this step's dead tasks, or None when all are live."""
        live = self.current_live
        if live is None or live.numel() != k or bool(live.all()):
            return None
        return ~live.cpu()

    def _rule_weights(self, gramian: Tensor) -> Tensor:
        k = gramian.shape[0]
        dead = self._dead(k)
        if dead is not None and self.restrict_to_live and not bool(dead.all()):
            idx = torch.nonzero(~dead).flatten().to(gramian.device)
            losses = self.current_losses
            if losses is not None and losses.numel() == k:
                self.current_losses = losses[idx.to(losses.device)]
            self.current_index = idx.cpu()
            try:
                sub = self.weights_from_gramian(gramian[idx][:, idx])
            finally:
                self.current_losses = losses
                self.current_index = None
            w = torch.zeros(k, dtype=sub.dtype, device=sub.device)
            w[idx.to(sub.device)] = sub
        else:
            w = self.weights_from_gramian(gramian)
        if not _all_finite(w):
            raise PolytaskError(
                f"{type(self).__name__} produced non-finite task weights {w.tolist()}"
            )
        if dead is not None:
            w = w.masked_fill(dead.to(w.device), 0.0)
        self._last_weights = w
        return w

    # -- the engine ---------------------------------------------------------------
    def resolved_path(self, ctx: BalanceContext | None = None) -> str:
        """The path ``backward`` takes (for ``ctx``, when the choice depends on sizes)."""
        if self.path != "auto":
            return self.path
        if not self.gramian_based or ctx is None:
            return "jacobian"
        k = len(ctx.losses)
        size = sum(p.numel() * p.element_size() for p in ctx.shared_params) * k
        return "gramian" if size > self.jacobian_memory_limit else "jacobian"

    def _gramian(self, ctx: BalanceContext) -> Tensor:
        """The Gramian of the shared parameters' task gradients, within the memory
        limit: the whole Jacobian when it fits ``jacobian_memory_limit``, else by
        Jacobian-vector products in chunks of as many tasks as fit (``chunk_size``
        when given), or by parameter blocks when ``max_block_numel`` is given."""
        params = ctx.shared_params
        reduce = engine.world_size() > 1
        if self.max_block_numel is not None:
            return scaling.gramian(
                ctx.losses, params, self.strategy, self.chunk_size, self.max_block_numel, reduce
            )
        k = len(ctx.losses)
        row_bytes = sum(p.numel() * p.element_size() for p in params)
        chunk = self.chunk_size or max(1, self.jacobian_memory_limit // max(1, row_bytes))
        if chunk >= k:  # the whole Jacobian fits: one pass, no double backward
            return scaling.gramian(
                ctx.losses, params, self.strategy, self.chunk_size, None, reduce, by_blocks=True
            )
        return scaling.gramian(
            ctx.losses, params, self.strategy, chunk, None, reduce, rtol=_product_rtol(ctx)
        )

    def _other_params(self, ctx: BalanceContext) -> list[Tensor]:
        """The non-shared parameters the losses reach (task-specific ones)."""
        shared_ids = {id(p) for p in ctx.shared_params}
        if ctx.task_params is not None:
            groups = [ctx.task_params[n] for n in ctx.names]
        else:
            groups = [engine.leaf_parameters(loss) for loss in ctx.losses]
        union: dict[int, Tensor] = {}
        for group in groups:
            for p in group:
                if id(p) not in shared_ids:
                    union.setdefault(id(p), p)
        return list(union.values())

    def _backward(self, ctx: BalanceContext) -> BalanceResult:
        self._last_weights = None
        self.extras = {}
        self.current_losses = ctx.loss_values
        self.current_live = ctx.live
        self.current_activation = None
        source = ctx.representation if self.resolved_path(ctx) == "representation" else None
        ref = (
            source
            if isinstance(source, Tensor)
            else (ctx.shared_params[0] if ctx.shared_params else None)
        )
        if ref is not None and ref.is_floating_point():
            self.precision = float(torch.finfo(ref.dtype).eps)
        pre = self.precomputed_weights(ctx)
        if pre is not None:
            self._last_weights = pre
            result = self._weighted_backward(ctx, pre)
        else:
            path = self.resolved_path(ctx)
            if path == "representation":
                result = self._backward_representation(ctx)
            elif not ctx.shared_params:
                raise PolytaskError(f"{type(self).__name__} needs shared_params")
            elif path == "gramian":
                gramian = self._gramian(ctx)
                result = self._weighted_backward(ctx, self._rule_weights(gramian))
            else:
                result = self._backward_jacobian(ctx)
        self.after_backward(ctx)
        result.extras.update(self.extras)
        self.current_activation = None  # do not keep the batch's activation alive
        self.current_live = None
        return result

    def _gradient_overflow(self, ctx: BalanceContext) -> BalanceResult:
        self.current_activation = None
        self.current_live = None
        return super()._gradient_overflow(ctx)

    def _weights_or_ones(self, k: int) -> Tensor:
        w = self._last_weights
        w = torch.ones(k, dtype=torch.float64) if w is None else w.detach()
        dead = self._dead(k)
        return w if dead is None else w.masked_fill(dead.to(w.device), 0.0)

    def _task_weights(self, k: int) -> Tensor:
        """The weights of the losses for the task-specific parameters."""
        if self.task_gradients == "raw":
            return torch.ones(k, dtype=torch.float64)
        return self._weights_or_ones(k)

    def _result(self, ctx: BalanceContext) -> BalanceResult:
        w = self._weights_or_ones(len(ctx.names))
        return BalanceResult(dict(zip(ctx.names, w.double().tolist())))

    def _weighted_backward(self, ctx: BalanceContext, w: Tensor) -> BalanceResult:
        w = w.detach()
        total = sum(wk.to(loss.dtype) * loss for wk, loss in zip(w, ctx.losses))
        if not (isinstance(total, Tensor) and total.requires_grad):
            return self._result(ctx)
        if self.task_gradients == "raw" and self._other_params(ctx):
            # the shared parameters get Σ w_k ∇L_k, the others Σ ∇L_k: two backward
            # passes restricted to each set (the second one only through the heads)
            self._backward_to(total, ctx.shared_params, retain_graph=True)
            self._backward_others(ctx, retain_graph=False)
        elif engine.averages_writes():  # the engine all-reduces what reaches .grad
            scaling.backward(total, inputs=ctx.shared_params + self._other_params(ctx))
        else:
            scaling.backward(total)
        return self._result(ctx)

    @staticmethod
    def _backward_to(total: Tensor, params: list[Tensor], retain_graph: bool) -> None:
        if params:
            scaling.backward(total, inputs=params, retain_graph=retain_graph)

    def _backward_others(self, ctx: BalanceContext, retain_graph: bool) -> None:
        others = self._other_params(ctx)
        if not others:
            return
        w = self._task_weights(len(ctx.losses))
        total = sum(wk.to(loss.dtype) * loss for wk, loss in zip(w, ctx.losses))
        if isinstance(total, Tensor) and total.requires_grad:
            scaling.backward(total, inputs=others, retain_graph=retain_graph)

    def _backward_jacobian(self, ctx: BalanceContext) -> BalanceResult:
        jac = scaling.jacobian(ctx.losses, ctx.shared_params, self.strategy, True, self.chunk_size)
        engine.average_across_ranks(jac)
        direction = self.aggregate(jac)
        del jac
        scaling.add_to_grad(ctx.shared_params, direction)
        self._backward_others(ctx, retain_graph=False)
        return self._result(ctx)

    def _backward_representation(self, ctx: BalanceContext) -> BalanceResult:
        rep = ctx.representation
        if rep is None or not isinstance(rep, Tensor) or not rep.requires_grad:
            raise PolytaskError(
                f"{type(self).__name__}(path='representation') needs representation="
                "model.shared_representation (a tensor in the graph)"
            )
        check_representation_reached(self, ctx, rep)
        self.current_activation = rep.detach()
        ranks = engine.world_size()
        if ranks > 1 and not self.gramian_based:
            raise PolytaskError(
                f"{type(self).__name__}(path='representation') is not supported under "
                "torch.distributed: its rule needs every rank's representation gradients; "
                "use path='jacobian'"
            )
        jac = scaling.jacobian(ctx.losses, [rep], self.strategy, True, self.chunk_size)
        if self.gramian_based:
            # the whole batch's representation Jacobian stacks the ranks' ones, each
            # scaled by 1/R (the loss is the mean over ranks): G = Σ_r G_r / R²
            gram = engine.average_across_ranks(engine.scaled_gram(jac)) / ranks
            del jac
            return self._weighted_backward(ctx, self._rule_weights(gram))
        direction = self.aggregate(jac).view_as(rep)
        del jac
        self._backward_others(ctx, retain_graph=True)
        engine.backward_from(rep, scaling.scaled(direction).to(rep.dtype))
        return self._result(ctx)


def _all_finite(w: Tensor) -> bool:
    """Whether every entry of the (small) weight vector is finite; read through NumPy
    on the CPU, where it costs a microsecond instead of a tensor op and a sync."""
    if w.device.type == "cpu" and not w.requires_grad:
        return bool(np.isfinite(w.numpy()).all())
    return bool(torch.isfinite(w).all())


def _product_rtol(ctx: BalanceContext) -> float:
    """The tolerance of the Gramian-by-products check: 1e-3, or 5e-2 when the graph
    is in half precision (autocast: a half-precision loss or representation)."""
    half = (torch.float16, torch.bfloat16)
    tensors = [
        *ctx.losses,
        *([ctx.representation] if isinstance(ctx.representation, Tensor) else []),
    ]
    return 5e-2 if any(t.dtype in half for t in tensors) else 1e-3


def check_representation_reached(balancer: Balancer, ctx: BalanceContext, rep: Tensor) -> None:
    """At a balancer's first step, raise when no loss passes through the representation
    (its gradients would be silently zero), naming the usual cause and the fix."""
    if ctx.step == 0 and not _reaches(ctx.losses, rep):
        raise PolytaskError(
            f"{type(balancer).__name__} on the representation: no task loss passes through "
            "representation= (its gradients would be zero). A model compiled whole with "
            "torch.compile fuses encoder and heads into one graph and keeps "
            "shared_representation only as a side output: compile the encoder alone "
            "(model.encoder = torch.compile(model.encoder)), or use the shared "
            "parameters (path='jacobian' or 'gramian')"
        )


def _reaches(losses: list[Tensor], tensor: Tensor) -> bool:
    """Whether some loss's graph passes through ``tensor`` (True for a leaf): an edge
    into ``tensor``'s own output of its grad_fn (a node with several outputs, such as
    a compiled graph's, may be reached through its other outputs only)."""
    target = tensor.grad_fn
    if target is None:
        return True
    edge = (target, tensor.output_nr)
    seen: set[int] = set()
    stack = [loss.grad_fn for loss in losses if loss.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        for child, nr in node.next_functions:
            if child is edge[0] and nr == edge[1]:
                return True
            stack.append(child)
    return False


#: the three ways a method runs on several processes (docs/distributed.md)
DISTRIBUTED_KINDS = ("losses", "gramian", "jacobian")


def distributed_kind(balancer: Balancer) -> str:
    """How ``balancer`` runs under ``torch.distributed`` (one place decides):

    - ``"losses"``: a loss weighting; the K loss values are averaged, then one
      weighted backward whose gradients are averaged (what DDP does);
    - ``"gramian"``: weights from the K×K Gramian of the whole batch's task
      gradients, then one weighted backward (averaged);
    - ``"jacobian"``: a rule that edits the task gradients coordinate by coordinate;
      the K×P Jacobian itself is averaged (K times a gradient's traffic).

    A wrapper (an architecture penalty) has its inner method's kind.
    """
    inner = getattr(balancer, "inner", balancer)
    if isinstance(inner, GradientAggregator):
        return "gramian" if inner.gramian_based else "jacobian"
    return "losses"
