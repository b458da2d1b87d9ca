"""UPGrad and DualProj: projections onto the dual cone of the task gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import dual_cone_weights, gramian_to_numpy


def _preferences(pref: list[float] | None, k: int, name: str,
                 index: Tensor | None = None) -> np.ndarray:
    """The preference vector for the K tasks the rule sees (``index``: their
    positions among all tasks, when dead tasks were left out)."""
    if pref is None:
        return np.full(k, 1.0 / k)
    p = np.asarray(pref, dtype=np.float64)
    if index is not None and p.ndim == 1 and p.shape[0] > k:
        p = p[index.numpy()]
    if p.shape != (k,) or (p < 0).any():
        raise ValueError(f"{name}: preferences must be {k} non-negative numbers, got {pref}")
    return p


@register("upgrad")
class UPGrad(GradientAggregator):
    """Unconflicting projection of gradients (Quinton & Rey, 2024, "Jacobian Descent for
    Multi-Objective Optimization", arXiv:2406.16232).

    Projects each task gradient onto the dual cone ``{x : J x ≥ 0}`` of the rows of
    ``J`` and averages the projections: ``d = Σ_i p_i π(g_i)`` (``p`` uniform by
    default). By the paper's Proposition, ``π(Jᵀ e_i) = Jᵀ v_i`` with
    ``v_i = argmin_{v ≥ e_i} vᵀ G v``, so the weights ``Σ_i p_i v_i`` come from the
    Gramian: K exact non-negative least-squares problems of size K (SciPy).
    ``J d ≥ 0``: the update never conflicts with any task.

    The projections are solved on the Gramian of the unit gradients (the cone is
    the same), so a task 10⁶ times smaller than the others is projected on exactly;
    a task with an exactly zero gradient keeps the least weight the definition allows
    (its preference), never an arbitrary large one. Task-specific parameters get each
    task's own ``∇L_k`` (torchjd's ``mtl_backward``: ``task_gradients="raw"``).

    Extra cost per step: the Jacobian or Gramian plus K NNLS solves of size K
    (O(K⁴) worst case, microseconds for K ≤ 40); a task whose gradient conflicts with
    no other needs none (its projection is itself, by the KKT conditions). Degenerate
    inputs: all-zero gradients give the zero update; exactly opposite gradients give zero.
    """

    properties = ("non_conflicting",)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "preferences": [None, params.PerTask(params.Interval(params.Real, 0, None))],
    }

    gramian_based = True
    restrict_to_live = True
    default_task_gradients = "raw"

    def __init__(self, preferences: list[float] | None = None, **engine_options: Any) -> None:
        super().__init__(**engine_options)
        self.preferences = preferences

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        p = _preferences(self.preferences, k, "UPGrad", self.current_index)
        v = dual_cone_weights(g, np.eye(k), self.precision)
        return to_weights(p @ v, gramian)


@register("dualproj")
class DualProj(GradientAggregator):
    """DualProj (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective
    Optimization"): the projection of the (preference-weighted) mean gradient onto the
    dual cone ``{x : J x ≥ 0}``: ``d = Jᵀ v`` with ``v = argmin_{v ≥ p} vᵀ G v``.

    ``J d ≥ 0``, and ``d`` is the mean gradient itself when that does not conflict
    with any task. Solved as :class:`UPGrad`'s projections (unit-gradient Gramian);
    task-specific parameters get ``∇L_k`` (torchjd). Extra cost per step: the
    Jacobian or Gramian plus one NNLS solve of size K (none when the mean conflicts
    with no task: it is its own projection). Degenerate inputs: as
    :class:`UPGrad`.
    """

    properties = ("non_conflicting",)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "preferences": [None, params.PerTask(params.Interval(params.Real, 0, None))],
    }

    gramian_based = True
    restrict_to_live = True
    default_task_gradients = "raw"

    def __init__(self, preferences: list[float] | None = None, **engine_options: Any) -> None:
        super().__init__(**engine_options)
        self.preferences = preferences

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        p = _preferences(self.preferences, g.shape[0], "DualProj", self.current_index)
        return to_weights(dual_cone_weights(g, p[None, :], self.precision)[0], gramian)
