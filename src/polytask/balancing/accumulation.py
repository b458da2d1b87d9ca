"""Gradient accumulation over micro-batches, exact for every balancing method.

A large batch split into M micro-batches gives, with plain ``loss.backward()`` per
micro-batch, the large batch's gradient only for a fixed weighted sum of the losses.
A balancer reads more than that: the Gramian of the *whole* batch's Jacobian (not the
sum of the micro-batches' Gramians), weights from the *whole* batch's losses (GLS,
IMTL-L, DB-MTL, STCH, FAMO, GradNorm, ...), one random draw per optimizer step. So
accumulation happens here, below every method, in the engine's terms:

- :meth:`GradientAccumulator.add` runs, per micro-batch, one engine Jacobian of the
  task losses w.r.t. every parameter they reach (and the shared representation,
  when the method reads it), and adds it, with the loss values, into running sums.
  The micro-batch's graph is then freed. With missing labels each micro-batch is
  weighted by how many labelled entries it has for each task (``counts``), so the
  result is the large batch's count-weighted mean, task by task;
- :meth:`GradientAccumulator.backward` builds, for each task, a *surrogate loss*
  ``L̃_k = L̄_k + Σ_p ⟨Ḡ_kp, p − p.detach()⟩``: its value is the whole batch's loss
  ``L̄_k`` and its gradient w.r.t. each parameter ``p`` is the whole batch's gradient
  ``Ḡ_kp``. The balancer then runs **once** on these losses, through its usual
  ``backward``: every engine path (Jacobian, Gramian by products or blocks, batched),
  every loss weighting (learned weights such as UW's or GradNorm's included), the
  fp16 loss scale and the cross-rank reduction apply unchanged, and the update is the
  large batch's to rounding.

The representation path: the representation gradients of different micro-batches
are different samples' rows, so the whole batch's representation Jacobian is the
micro-batches' stacked (its Gramian the sum of theirs). A surrogate representation
(the micro-batches' representations concatenated, a leaf) carries them. Rules whose
update is a weighted sum of task gradients (MGDA-UB, IMTL's representation path, and
every Gramian-based aggregator) are then exact with no graph kept. A rule that
computes a direction *on the representation* (GradDrop, or any non-Gramian
aggregator with ``path="representation"``) needs each micro-batch's encoder graph to
carry that direction back: pass ``keep_graphs=True`` (exact, at the large batch's
activation memory), or use ``path="jacobian"``; without either it raises.

Cost per optimizer step, against the large batch:

- memory: the accumulated K×P Jacobian of every parameter the losses reach (P: all of
  them, heads included), plus K × the representation's size on the representation
  path; the activations are those of one micro-batch (of all of them with
  ``keep_graphs``);
- time: per micro-batch one engine Jacobian (K backward passes with the ``"loop"``
  strategy, one vectorised one with ``"batched"``), then the method's own step on the
  surrogate losses, whose backward passes touch only the K×P sums (no model graph).
  For a Jacobian method this is about the large batch's cost; for a loss weighting,
  which would need one backward, it is about K backward passes per micro-batch
  (``scripts/bench_accumulation.py`` measures it).

Random methods draw once per optimizer step (the balancer runs once); FAMO's
after-step update takes the whole batch's losses after the step
(:func:`whole_batch_losses` of the micro-batches', the Trainer does that forward).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ..errors import PolytaskError
from . import engine, scaling
from .base import Balancer, BalanceResult, GradientAggregator


def _counts_vector(names: Sequence[str], counts: Mapping[str, Any] | None) -> Tensor:
    if counts is None:
        return torch.ones(len(names), dtype=torch.float64)
    missing = [n for n in names if n not in counts]
    if missing:
        raise PolytaskError(f"counts lacks task(s) {missing}; it has {sorted(counts)}")
    values = torch.tensor([float(counts[n]) for n in names], dtype=torch.float64)
    bad = [n for n, v in zip(names, values.tolist()) if not v >= 0]
    if bad:
        raise PolytaskError(f"counts must be ≥ 0; task(s) {bad} have {values.tolist()}")
    return values


def whole_batch_losses(
    micro_losses: Sequence[Mapping[str, Tensor]],
    counts: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Tensor]:
    """The large batch's task losses from its micro-batches' (detached): per task the
    mean weighted by each micro-batch's labelled-entry count (``counts``; equal
    weights when None), 0 for a task labelled in no micro-batch."""
    if not micro_losses:
        raise PolytaskError("whole_batch_losses needs at least one micro-batch")
    names = list(micro_losses[0])
    total = torch.zeros(len(names), dtype=torch.float64)
    weight = torch.zeros(len(names), dtype=torch.float64)
    for i, losses in enumerate(micro_losses):
        n = _counts_vector(names, None if counts is None else counts[i])
        values = torch.stack([losses[k].detach().reshape(()).double().cpu() for k in names])
        total += n * values
        weight += n
    mean = total / weight.clamp(min=1.0)
    ref = micro_losses[0][names[0]]
    return {k: mean[i].to(device=ref.device, dtype=ref.dtype) for i, k in enumerate(names)}


def _needs_representation(balancer: Balancer) -> tuple[bool, bool]:
    """(whether the method reads the representation, whether its update on it is a
    weighted sum of the task gradients)."""
    inner = getattr(balancer, "inner", None)
    if isinstance(inner, Balancer):  # a wrapper (Regularized): the inner method decides
        return _needs_representation(inner)
    if isinstance(balancer, GradientAggregator):
        if balancer.path == "representation":
            return True, balancer.gramian_based
        return False, True
    path = getattr(balancer, "path", None)
    layer = getattr(balancer, "layer", None)
    return path == "representation" or layer == "representation", True


class GradientAccumulator:
    """Accumulate micro-batches, then one balancer step equal to the large batch's.

    >>> acc = GradientAccumulator(balancer, shared_params=model.shared_parameters())
    >>> for inputs, targets in micro_batches:
    ...     out = model(inputs)
    ...     losses = {t: tasks[t].loss(out[t], targets[t]) for t in tasks}
    ...     acc.add(losses, counts={t: labelled_entries[t] for t in tasks})
    >>> result = acc.backward()     # the method's rule once; fills .grad
    >>> optimizer.step(); optimizer.zero_grad()

    Args:
        balancer: any registered method (the same object the loop would call).
        shared_params: the shared parameters (``model.shared_parameters()``).
        task_params: optional ``{task: its own parameters}`` (found from the graph
            otherwise).
        keep_graphs: keep every micro-batch's graph until :meth:`backward`; needed
            (and only then used) by rules that compute a direction on the shared
            representation (GradDrop, non-Gramian aggregators on
            ``path="representation"``). Costs the large batch's activation memory.
        micro_batches: how many micro-batches a step will have (a hint, optional):
            each micro-batch's backward is then seeded with ``1/micro_batches`` of its
            losses, so that under a float16 loss scale its gradients have the large
            batch's magnitude (a micro-batch's mean weighs each sample M× more, and
            could overflow where the large batch does not); the rows are multiplied
            back in float32. Does not change the result otherwise.
        strategy: the engine strategy of the micro-batch Jacobians, ``"loop"`` (K
            backward passes) or ``"batched"`` (one vectorised pass, more memory);
            default the balancer's own ``strategy``, else ``"loop"``.

    Extra cost: see the module docstring (K×P memory; one engine Jacobian per
    micro-batch).
    """

    def __init__(
        self,
        balancer: Balancer,
        shared_params: Iterable[Tensor] | None = None,
        task_params: Mapping[str, Iterable[Tensor]] | None = None,
        keep_graphs: bool = False,
        micro_batches: int | None = None,
        strategy: str | None = None,
    ) -> None:
        if not isinstance(balancer, Balancer):
            raise PolytaskError(
                f"GradientAccumulator needs a Balancer, got {type(balancer).__name__}"
            )
        self.balancer = balancer
        self.shared_params = [p for p in (shared_params or []) if p.requires_grad]
        self.task_params = (
            None
            if task_params is None
            else {n: [p for p in ps if p.requires_grad] for n, ps in task_params.items()}
        )
        self.keep_graphs = bool(keep_graphs)
        if micro_batches is not None and (not isinstance(micro_batches, int) or micro_batches < 1):
            raise PolytaskError(f"micro_batches must be a positive int, got {micro_batches!r}")
        self.expected = micro_batches or 1
        if strategy is not None and strategy not in engine.STRATEGIES:
            raise PolytaskError(f"unknown strategy {strategy!r}; available: {engine.STRATEGIES}")
        own = getattr(balancer, "strategy", None)
        self.strategy = strategy or (own if own in engine.STRATEGIES else "loop")
        self.reads_representation, self.weighted_on_representation = _needs_representation(balancer)
        self.reset()

    def reset(self) -> None:
        """Drop what was accumulated (``backward`` does it after its step)."""
        self.names: list[str] | None = None
        self._params: dict[int, Tensor] = {}
        self._sums: dict[int, Tensor] = {}  # id(param) -> K × numel: Σ_m n_km ∇L_km
        self._reached: list[set[int]] = []
        self._loss_sum: Tensor | None = None
        self._count: Tensor | None = None
        self._reps: list[Tensor] = []  # detached micro-batch representations
        self._rep_rows: list[Tensor] = []  # K × numel(rep_m): n_km ∂L_km/∂rep_m
        self._graph_reps: list[Tensor] = []  # with keep_graphs: the live ones
        self._overflow = False
        self.micro_batches = 0

    def _check_names(self, losses: Mapping[str, Tensor]) -> list[str]:
        if not isinstance(losses, Mapping) or not losses:
            raise PolytaskError("losses must be a non-empty dict {task name: scalar loss}")
        names = list(losses)
        if self.names is None:
            self.names = names
        elif names != self.names:
            raise PolytaskError(
                f"tasks differ between micro-batches: first {self.names}, now {names}"
            )
        return names

    def _parameters_of(self, losses: Sequence[Tensor]) -> list[Tensor]:
        shared_ids = {id(p) for p in self.shared_params}
        for p in self.shared_params:
            self._params.setdefault(id(p), p)
        for k, loss in enumerate(losses):
            if self.task_params is not None:
                reached = [p for p in self.task_params[self.names[k]]]
            else:
                reached = engine.leaf_parameters(loss) if loss.requires_grad else []
            for p in reached:
                self._params.setdefault(id(p), p)
            self._reached[k].update(id(p) for p in reached)
            self._reached[k].update(shared_ids)
        return list(self._params.values())

    def add(
        self,
        losses: Mapping[str, Tensor],
        counts: Mapping[str, Any] | None = None,
        representation: Tensor | None = None,
        grad_scale: Any = None,
    ) -> None:
        """Add one micro-batch: its ``{task: loss}`` (each a mean over the
        micro-batch's labelled entries), ``counts`` (``{task: labelled entries}``;
        every micro-batch weighs the same when None), the shared ``representation``
        for methods on the representation path, and ``grad_scale`` as in
        :meth:`Balancer.backward` (the same scaler as for :meth:`backward`).
        Frees the micro-batch's graph (unless ``keep_graphs``)."""
        names = self._check_names(losses)
        k = len(names)
        if not self._reached:
            self._reached = [set() for _ in names]
        values = []
        for name in names:
            loss = losses[name]
            if not isinstance(loss, Tensor) or loss.numel() != 1:
                raise PolytaskError(f"loss of task {name!r} must be a scalar tensor")
            values.append(loss.reshape(()))
        n = _counts_vector(names, counts)
        rep = None
        if self.reads_representation:
            if not isinstance(representation, Tensor) or not representation.requires_grad:
                raise PolytaskError(
                    f"{type(self.balancer).__name__} reads the shared representation: "
                    "add(..., representation=model.shared_representation)"
                )
            if not self.weighted_on_representation and not self.keep_graphs:
                raise PolytaskError(
                    f"{type(self.balancer).__name__} on path='representation' computes "
                    "its direction on the representation, which needs every micro-batch's "
                    "encoder graph: build it with path='jacobian' (exact, no graph kept) "
                    "or accumulate with keep_graphs=True (exact, at the large batch's "
                    "activation memory)"
                )
            rep = representation
        params = self._parameters_of(values)
        if self.micro_batches == 0:
            self._check_memory(params, k)
        inputs = params + ([rep] if rep is not None else [])
        device = values[0].device
        strategy = self.strategy
        chunk = getattr(self.balancer, "chunk_size", None)
        keep = self.keep_graphs and rep is not None
        with scaling.active(scaling.resolve(grad_scale, device)):
            try:
                # the counts multiply the unscaled rows (not the seeds: under a float16
                # loss scale a seed n × s could overflow where s does not)
                seeds = values if self.expected == 1 else [v / self.expected for v in values]
                jac = scaling.jacobian(seeds, inputs, strategy, keep, chunk)
                jac = jac * (n * self.expected).to(device=jac.device, dtype=jac.dtype)[:, None]
            except scaling.GradientOverflow:
                self._overflow = True
                jac = None
        loss_values = torch.stack([v.detach().double().cpu() for v in values])
        if self._loss_sum is None:
            self._loss_sum = torch.zeros(k, dtype=torch.float64)
            self._count = torch.zeros(k, dtype=torch.float64)
        self._loss_sum += n * loss_values
        self._count += n
        self.micro_batches += 1
        if rep is not None:
            self._reps.append(rep.detach())
            if keep:
                self._graph_reps.append(rep)
        if jac is None:
            return
        offset = 0
        for p in params:
            size = p.numel()
            block = jac[:, offset : offset + size].to(p.dtype)
            offset += size
            if id(p) in self._sums:
                self._sums[id(p)] += block
            else:
                self._sums[id(p)] = block.clone()
        if rep is not None:
            self._rep_rows.append(jac[:, offset:].clone())

    def _check_memory(self, params: Sequence[Tensor], k: int) -> None:
        """Warn when the accumulated K×P Jacobian exceeds the memory limit of a method
        that the limit puts on the Gramian path (the path that never holds K×P)."""
        bal = self.balancer
        if not isinstance(bal, GradientAggregator) or bal.path == "representation":
            return
        size = k * sum(p.numel() * p.element_size() for p in params)
        if (
            bal.path in ("auto", "gramian")
            and bal.gramian_based
            and (size > bal.jacobian_memory_limit)
        ):
            warnings.warn(
                f"{type(bal).__name__}: accumulation holds the K×P Jacobian of the "
                f"micro-batches ({size / 2**20:.0f} MiB) beyond jacobian_memory_limit "
                f"({bal.jacobian_memory_limit / 2**20:.0f} MiB), which the Gramian path "
                "exists to avoid; the update is exact, the memory is not bounded. Use "
                "a larger batch per step, or a representation-path method (its "
                "accumulated rows are K × the representation)",
                RuntimeWarning,
                stacklevel=3,
            )

    def whole_batch_losses(self) -> dict[str, float]:
        """The large batch's loss of each task so far (count-weighted means)."""
        if self._loss_sum is None or self.names is None:
            return {}
        mean = self._loss_sum / self._count.clamp(min=1.0)
        return dict(zip(self.names, mean.tolist()))

    def _surrogates(self) -> tuple[dict[str, Tensor], Tensor | None]:
        names = self.names
        assert names is not None and self._count is not None and self._loss_sum is not None
        inv = 1.0 / self._count.clamp(min=1.0)
        mean = self._loss_sum * inv
        params = list(self._params.values())
        ref = params[0] if params else None
        dtype = ref.dtype if ref is not None else torch.float32
        device = ref.device if ref is not None else torch.device("cpu")
        rep_leaf = None
        rep_rows = None
        if self._reps:
            rep_leaf = torch.cat(self._reps, dim=0)
            if rep_leaf.dtype in (torch.float16, torch.bfloat16):  # autocast: rules in fp32
                rep_leaf = rep_leaf.float()
            rep_leaf.requires_grad_(True)
            rep_rows = torch.cat(self._rep_rows, dim=1) if self._rep_rows else None
        losses: dict[str, Tensor] = {}
        for k, name in enumerate(names):
            total = mean[k].to(device=device, dtype=dtype)
            scale = float(inv[k])
            for pid in self._reached[k]:
                p = self._params[pid]
                rows = self._sums.get(pid)
                if rows is None:
                    continue
                total = total + (rows[k].view_as(p) * scale * (p - p.detach())).sum()
            if rep_leaf is not None and rep_rows is not None:
                flat = rep_leaf.reshape(-1)
                total = total + (rep_rows[k].to(flat) * scale * (flat - flat.detach())).sum()
            losses[name] = total
        return losses, rep_leaf

    def _own_params(self) -> dict[str, list[Tensor]]:
        """Each task's non-shared parameters (the surrogate reaches only those)."""
        shared = {id(p) for p in self.shared_params}
        assert self.names is not None
        return {
            name: [
                self._params[i] for i in self._params if i in self._reached[k] and i not in shared
            ]
            for k, name in enumerate(self.names)
        }

    def backward(self, grad_scale: Any = None) -> BalanceResult:
        """Run the balancer once on the whole batch of the micro-batches added since
        the last call; fill ``.grad`` (adding, as ``Tensor.backward`` does) and
        return its result. Resets the accumulator."""
        if self.micro_batches == 0 or self.names is None:
            raise PolytaskError("GradientAccumulator.backward before any add()")
        try:
            if self._overflow:
                return self._overflowed()
            losses, rep_leaf = self._surrogates()
            result = self.balancer.backward(
                losses,
                shared_params=self.shared_params,
                task_params=self._own_params(),
                representation=rep_leaf,
                grad_scale=grad_scale,
            )
            if self._graph_reps and rep_leaf is not None and rep_leaf.grad is not None:
                # the rule's direction on the stacked representation, back through each
                # micro-batch's encoder graph (already ``s ×`` under a loss scale)
                pieces = rep_leaf.grad.split([r.shape[0] for r in self._graph_reps], dim=0)
                for rep, piece in zip(self._graph_reps, pieces):
                    engine.backward_from(rep, piece.to(rep.dtype))
            result.extras["micro_batches"] = float(self.micro_batches)
            return result
        finally:
            self.reset()

    def _overflowed(self) -> BalanceResult:
        """A micro-batch's per-task gradients overflowed under the fp16 loss scale:
        no rule runs, ``.grad`` is set to inf so that ``scaler.step`` skips."""
        params = list(self._params.values())
        scaling.mark_overflow(params, [])
        self.balancer.step += 1
        assert self.names is not None
        return BalanceResult(dict.fromkeys(self.names, 1.0), {"grad_overflow": 1.0})
