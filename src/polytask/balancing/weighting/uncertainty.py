"""Uncertainty weighting (UW): learned homoscedastic log-variances."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext
from ..registry import register
from ._common import StatefulWeighting

FORMS = ("regression", "classification")
_REGRESSION_KINDS = ("regression", "dense_regression", "reconstruction")


def _unknown_form(name: str) -> str:
    """The regression form, loudly: with task names only, UW cannot tell a
    classification task (whose form differs) from a regression one."""
    warnings.warn(
        f"UW: the kind of task {name!r} is unknown (a task name, not a Task object, and "
        "no forms=): using the regression form. Give the Task objects (tasks=..., or "
        "balancer.attach(tasks=...), as the Trainer does) or forms={task: form}.",
        RuntimeWarning,
        stacklevel=5,
    )
    return "regression"


@register("uw")
class UncertaintyWeighting(StatefulWeighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018).

    Each task k has a learned log-variance ``s_k = log σ_k²`` and the objective is

    - regression form:     ``½ e^{-s_k} L_k + ½ s_k``   (``L/(2σ²) + log σ``),
    - classification form: ``e^{-s_k} L_k + ½ s_k``     (``L/σ² + log σ``),

    so at the optimum ``σ_k² = L_k`` (regression) or ``2 L_k`` (classification): each
    task's weight falls as its loss grows. The weight reported for task k is the
    factor on ``∇L_k``: ``½ e^{-s_k}`` or ``e^{-s_k}``.

    Who steps ``log_vars``: as in the paper, the user's optimizer, jointly with the
    network (``lr=None``, the default): add ``balancer.extra_parameters()`` to it (the
    Trainer does), and give ``tasks=`` (or call ``prepare``) before building it. With
    ``lr=...`` an internal Adam steps them instead.

    Extra cost per step: none (K scalars in the loss).

    Args:
        tasks: task names or Task objects (then the form of each task is inferred from
            its kind: regression kinds -> "regression", others -> "classification").
        forms: "regression" or "classification" for every task, or ``{task: form}``;
            overrides what ``tasks`` implies. Default: inferred from the Task specs when
            they are known (given here, or by the Trainer through ``attach``), else
            regression for every task.
        init: initial log-variance (0: every σ² = 1).
        lr: internal optimizer learning rate; None = the user's optimizer steps them.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "forms": [None, params.Options(FORMS), Mapping],
        "init": [float],
    }

    _has_parameters = True

    def __init__(
        self,
        tasks: Iterable[Any] | int | None = None,
        forms: str | Mapping[str, str] | None = None,
        init: float = 0.0,
        lr: float | None = None,
    ) -> None:
        self.init = float(init)
        self._forms_given = forms
        self._inferred: dict[str, str] = {}
        if tasks is not None and not isinstance(tasks, int):
            self._infer_forms(tasks)
        super().__init__(tasks=tasks, lr=lr)

    def _infer_forms(self, tasks: Iterable[Any]) -> None:
        for t in tasks:
            if not isinstance(t, str):
                regression = getattr(t, "kind", "") in _REGRESSION_KINDS
                self._inferred[t.name] = "regression" if regression else "classification"

    def attach(self, **context: Any) -> UncertaintyWeighting:
        """Infer each task's form from the Task specs the Trainer gives (``tasks=``)."""
        tasks = context.get("tasks")
        if tasks:
            self._infer_forms(tasks.values() if isinstance(tasks, Mapping) else tasks)
        return self

    def _build(self, k: int, device: torch.device | None, dtype: torch.dtype) -> None:
        self.log_vars = nn.Parameter(torch.full((k,), self.init, device=device, dtype=dtype))

    def forms(self, names: list[str]) -> list[str]:
        """The form (regression/classification) of each task in ``names``."""
        given = self._forms_given
        result = []
        for name in names:
            if isinstance(given, str):
                form = given
            elif isinstance(given, Mapping) and name in given:
                form = given[name]
            else:
                form = self._inferred.get(name) or _unknown_form(name)
            if form not in FORMS:
                raise PolytaskError(f"task {name!r}: unknown UW form {form!r}; choose from {FORMS}")
            result.append(form)
        if isinstance(given, Mapping):
            unknown = set(given) - set(names)
            if unknown:
                raise PolytaskError(f"UW forms given for unknown tasks {sorted(unknown)}")
        return result

    def coefficients(self, names: list[str], like: Tensor) -> Tensor:
        """½ for regression-form tasks, 1 for classification-form ones."""
        values = [0.5 if f == "regression" else 1.0 for f in self.forms(names)]
        return torch.tensor(values, dtype=like.dtype, device=like.device)

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        self._ensure_built(ctx)
        losses = torch.stack(ctx.losses)
        s = self.log_vars
        w = self.coefficients(ctx.names, s) * torch.exp(-s)
        total = (w * losses).sum() + 0.5 * s.sum()
        return total, w.detach()

    def _backward(self, ctx: BalanceContext):  # noqa: ANN202
        result = super()._backward(ctx)
        self._step_inner()
        result.extras.update(
            {f"sigma2/{n}": float(v) for n, v in zip(ctx.names, self.log_vars.detach().exp())}
        )
        return result
