"""Architecture penalties through the balancing machinery: :class:`Regularized`.

Some architectures train with a term that is no task's loss: the parameter distance of
soft sharing, AdaShare's sparsity and sharing losses, DSelect-k's selector entropy,
the subspace orthogonality of sluice networks. A model states it as
``model.regularization() -> Tensor | None`` (computed after ``forward``), and a
balancer wrapped by :class:`Regularized` adds its gradient to the update:

>>> balancer = polytask.balancing.penalty.attach(polytask.balancing.get("pcgrad"), model)
>>> out = model(x); losses = {...}
>>> balancer.backward(losses, shared_params=model.shared_parameters())  # tasks + penalty

The penalty is not balanced: it is no objective of a task, so it is never weighted,
projected or aggregated with the task losses; its gradient ``weight × ∇penalty`` is
added to ``.grad`` as is, next to whatever the inner balancer computes. Configs use the
registered name ``regularized`` (``get("regularized", balancer="pcgrad",
penalty=model)``); the Trainer wraps its balancer with :func:`attach`, which is a
no-op for models without a penalty.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .. import params
from ..errors import NonFiniteLossError, PolytaskError
from . import scaling
from .base import Balancer, BalanceResult
from .registry import get, register

PenaltySource = Callable[[], Tensor | None] | nn.Module


def _has_penalty(model: object) -> bool:
    """Whether the model's class defines its own ``regularization`` (duck-typed: the
    balancing layer does not import the models layer above it)."""
    method = getattr(type(model), "regularization", None)
    if method is None:
        return False
    return getattr(method, "__qualname__", "") != "MultiTaskModel.regularization"


@register("regularized")
class Regularized(Balancer):
    """A balancer plus an architecture penalty: ``.grad += weight × ∇penalty``.

    Args:
        balancer: the inner balancer, or its registered name (built with ``kwargs``).
        penalty: a model with ``regularization()``, or a callable returning the
            penalty (a scalar tensor, or None for none at this step). It is called at
            each ``backward``, after the forward and before the inner balancer frees
            the graph.
        weight: a multiplier of the penalty (the model's own weights apply first).

    Extra cost per step: one backward of the penalty (for parameter-only penalties,
    e.g. soft sharing, a pass over the tied parameters; for activation penalties the
    part of the graph they depend on).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "balancer": [Balancer, str],
        "penalty": ["no_validation"],
        "weight": [params.Interval(params.Real, 0, None)],
        "**kwargs": ["no_validation"],
    }

    def __init__(
        self,
        balancer: Balancer | str = "ew",
        penalty: PenaltySource | None = None,
        weight: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.inner = get(balancer, **kwargs) if isinstance(balancer, str) else balancer
        if not isinstance(self.inner, Balancer):
            raise PolytaskError(f"Regularized wraps a Balancer, got {type(self.inner).__name__}")
        if penalty is None:
            raise PolytaskError("Regularized needs penalty=model (or a callable)")
        if isinstance(penalty, nn.Module):
            if not hasattr(penalty, "regularization"):
                raise PolytaskError(
                    f"{type(penalty).__name__} has no regularization() method to penalise"
                )
            source = penalty
            # a closure, not a submodule: the model's parameters must not become the
            # balancer's (get_extra_state below keeps it out of checkpoints too)
            self._penalty_fn = lambda: source.regularization()
        elif callable(penalty):
            self._penalty_fn = penalty
        else:
            raise PolytaskError(f"penalty must be a model or a callable, got {penalty!r}")
        self.weight = float(weight)
        self.needs_shared_params = self.inner.needs_shared_params
        self.needs_losses_after_step = self.inner.needs_losses_after_step

    def __getattr__(self, name: str) -> Any:
        """Anything else (``prepare``, ``attach``, method attributes) is the inner
        balancer's, so code that inspects a balancer sees through the wrapper."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("inner")
            if inner is None:
                raise
            return getattr(inner, name)

    def extra_parameters(self) -> list[nn.Parameter]:
        return self.inner.extra_parameters()

    def on_epoch_end(
        self, epoch: int | None = None, train_losses: Mapping[str, float] | None = None
    ) -> None:
        self.inner.on_epoch_end(epoch, train_losses)

    def on_step_end(self, losses_after: Any = None) -> None:
        self.inner.on_step_end(losses_after)

    def prepare(self, task_names: Sequence[str]) -> None:
        self.inner.prepare(task_names)

    def attach(self, **context: Any) -> Balancer:
        self.inner.attach(**context)
        return self

    def get_extra_state(self) -> dict:
        return {"weight": self.weight, "task_names": self.task_names}

    def set_extra_state(self, state: dict) -> None:
        self.weight = state.get("weight", self.weight)
        self.task_names = state.get("task_names")

    def penalty(self) -> Tensor | None:
        """The current penalty value (None when the model has none at this step)."""
        value = self._penalty_fn()
        if value is None:
            return None
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise PolytaskError(
                f"regularization() must return a scalar tensor or None, got {value!r}"
            )
        if not bool(torch.isfinite(value.detach())):
            raise NonFiniteLossError(
                f"non-finite architecture penalty {float(value.detach())} at balancer step "
                f"{int(self.step)}"
            )
        return value.reshape(())

    def backward(
        self,
        losses: Mapping[str, Tensor],
        shared_params: Iterable[Tensor] | None = None,
        task_params: Mapping[str, Iterable[Tensor]] | None = None,
        representation: Tensor | None = None,
        grad_scale: Any = None,
    ) -> BalanceResult:
        """The inner balancer's update plus ``weight × ∇penalty`` (added to ``.grad``;
        ``grad_scale`` as in :meth:`Balancer.backward`, for both)."""
        device = next(iter(losses.values())).device if losses else None
        with scaling.active(scaling.resolve(grad_scale, device)):
            value = self.penalty()
            if value is not None and value.requires_grad and self.weight != 0:
                # first, keeping the graph: the inner balancer frees it afterwards
                scaling.backward(self.weight * value, retain_graph=True)
            result = self.inner.backward(losses, shared_params, task_params, representation)
        if self.task_names is None:
            self.task_names = self.inner.task_names
        self.step += 1
        result.extras["penalty"] = 0.0 if value is None else float(value.detach())
        return result


def attach(balancer: Balancer, model: object, weight: float = 1.0) -> Balancer:
    """``balancer`` wrapped with the model's penalty, or unchanged when it has none.

    A model has a penalty when its class overrides ``MultiTaskModel.regularization``
    (or, for other modules, defines ``regularization``). Attaching twice is a no-op.
    """
    if isinstance(balancer, Regularized) or not _has_penalty(model):
        return balancer
    return Regularized(balancer, penalty=model, weight=weight)  # type: ignore[arg-type]
