"""Shared machinery of the loss weightings: per-task state created once the tasks are
known, an optional internal optimizer for the method's own parameters, and
checkpoints without outside objects.

Who steps a method's learnable parameters:

- ``lr=None`` (the *external* mode): the user's optimizer, which must hold
  ``balancer.extra_parameters()`` (the Trainer adds them). The parameters must exist
  before the optimizer is built: give ``tasks=`` to the constructor or call
  ``balancer.prepare(task_names)`` first.
- ``lr=<float>`` (the *internal* mode): the balancer's own optimizer steps them inside
  ``backward``; ``extra_parameters()`` is then empty, so nothing steps them twice, and a
  plain training loop needs nothing special.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from .. import scaling
from ..base import BalanceContext, LossWeighting


def task_names_of(tasks: Iterable[Any] | int) -> list[str]:
    """Task names from names, Task objects, a name -> Task mapping, or a count."""
    if isinstance(tasks, int):
        return [f"task{k}" for k in range(tasks)]
    if isinstance(tasks, str):
        raise PolytaskError(f"tasks must be a sequence of task names, got the string {tasks!r}")
    return [t if isinstance(t, str) else t.name for t in tasks]


class StatefulWeighting(LossWeighting):
    """A loss weighting with per-task state built once the tasks are known.

    Subclasses implement :meth:`_build` (create parameters/buffers for K tasks). Plain
    attributes (histories, inner optimizer) are checkpointed by the base class; those
    naming outside objects are listed in ``_transient_attrs`` and left out.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "tasks": ["no_validation"],
        "lr": [None, params.Interval(params.Real, 0, None, closed="neither")],
        "weight_decay": [params.Interval(params.Real, 0, None)],
    }

    #: attributes that refer to outside objects and stay out of checkpoints
    _transient_attrs: tuple[str, ...] = ()
    #: whether the method's parameters are stepped by an internal optimizer by default
    _optimizer_cls: type[torch.optim.Optimizer] = torch.optim.Adam

    def __init__(
        self,
        tasks: Iterable[Any] | int | None = None,
        lr: float | None = None,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.lr = lr
        self.weight_decay = weight_decay
        self._built = False
        self._inner_optimizer: torch.optim.Optimizer | None = None
        if tasks is not None:
            self.prepare(task_names_of(tasks))

    # -- set-up ---------------------------------------------------------------------
    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        """Create the method's per-task parameters and state for ``k`` tasks."""

    def prepare(self, task_names: Sequence[str]) -> None:
        """Create the per-task state for ``task_names`` (before building an optimizer).

        Idempotent for the same tasks; a different task list raises.
        """
        names = list(task_names)
        if not names:
            raise PolytaskError(f"{type(self).__name__}.prepare needs at least one task")
        if self._built:
            if self.task_names != names:
                raise PolytaskError(
                    f"{type(self).__name__} was prepared for tasks {self.task_names}, "
                    f"now given {names}"
                )
            return
        self.task_names = names
        self._build(len(names), self.step.device, torch.get_default_dtype())
        self._built = True
        self._make_inner_optimizer()

    def _make_inner_optimizer(self) -> None:
        params = list(self.parameters())
        if self.lr is not None and params:
            self._inner_optimizer = self._optimizer_cls(
                params, lr=self.lr, weight_decay=self.weight_decay
            )

    def _ensure_built(self, ctx: BalanceContext) -> None:
        if self._built:
            return
        ref = ctx.losses[0]
        self._build(len(ctx.names), ref.device, ref.dtype)
        self._built = True
        self._make_inner_optimizer()
        if self.lr is None and list(self.parameters()):
            warnings.warn(
                f"{type(self).__name__} created its learnable parameters at the first "
                "backward: no optimizer holds them. Give tasks=... (or call "
                "balancer.prepare(task_names)) and add balancer.extra_parameters() to "
                "your optimizer, or pass lr=... to let the balancer step them itself.",
                RuntimeWarning,
                stacklevel=4,
            )

    @property
    def internal_optimizer(self) -> bool:
        """Whether the balancer steps its own parameters (``lr`` given)."""
        return self.lr is not None

    def extra_parameters(self) -> list[nn.Parameter]:
        """Parameters the user's optimizer must step: none in the internal mode."""
        if self.internal_optimizer:
            return []
        if not self._built and type(self)._has_parameters:
            raise PolytaskError(
                f"{type(self).__name__} has no parameters yet: give tasks=... to its "
                "constructor or call balancer.prepare(task_names) before building the optimizer"
            )
        return list(self.parameters())

    #: whether the method owns learnable parameters (for the error above)
    _has_parameters: bool = False

    def _step_inner(self) -> None:
        """Step the internal optimizer (if any) and clear the parameters' gradients.

        Under a float16 loss scale (:mod:`..scaling`) the gradients are divided by it
        first, and the step is skipped when one is not finite (as GradScaler does)."""
        if self._inner_optimizer is not None:
            params = [p for g in self._inner_optimizer.param_groups for p in g["params"]]
            if scaling.unscale_grads_(params):
                self._inner_optimizer.step()
            self._inner_optimizer.zero_grad(set_to_none=True)

    # -- checkpoints -------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        # a checkpoint of a prepared balancer loads into a fresh one: build it first
        extra = state_dict.get(prefix + "_extra_state")
        if not self._built and isinstance(extra, dict) and extra.get("_built"):
            names = extra.get("task_names")
            if names:
                self.prepare(names)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def get_extra_state(self) -> dict[str, Any]:
        """The base class's state, less references to outside objects (models, ...)."""
        state = super().get_extra_state()
        for attr in self._transient_attrs:
            state.pop(attr, None)
        return state


def as_weights_tensor(values: Iterable[float], like: Tensor) -> Tensor:
    """A 1-D tensor on the device and dtype of ``like``."""
    return torch.as_tensor(list(values), dtype=like.dtype, device=like.device)


def non_shared_parameters(ctx: BalanceContext) -> list[Tensor]:
    """The parameters the losses reach that are not shared (task heads, ...)."""
    from .. import engine

    shared = {id(p) for p in ctx.shared_params}
    found: dict[int, Tensor] = {}
    if ctx.task_params is not None:
        groups: list[list[Tensor]] = [ctx.task_params[n] for n in ctx.names]
    else:
        groups = [engine.leaf_parameters(loss) if loss.requires_grad else [] for loss in ctx.losses]
    for group in groups:
        for p in group:
            if id(p) not in shared:
                found.setdefault(id(p), p)
    return list(found.values())


def backward_shared_and_rest(
    ctx: BalanceContext,
    shared_direction: Tensor,
    rest_loss: Tensor,
) -> None:
    """Give the shared parameters ``shared_direction`` (a flat P-vector) and every other
    parameter the gradient of ``rest_loss`` (one backward restricted to them)."""
    scaling.add_to_grad(ctx.shared_params, shared_direction)
    others = non_shared_parameters(ctx)
    if others and rest_loss.requires_grad:
        scaling.backward(rest_loss, inputs=others)
