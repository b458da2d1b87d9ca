"""ConFIG: conflict-free update from the pseudo-inverse of the unit gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import active_tasks, equilibrate, gramian_to_numpy, rank_tolerance, scale_of


@register("config")
class ConFIG(GradientAggregator):
    """ConFIG (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks").

    Direction ``x = U⁺ 1`` for the matrix ``U`` of unit task gradients (equal cosine
    with every task; in the row space of ``J``, so ``x = Jᵀ N β`` with
    ``β = (N G N)⁺ 1``), and length ``Σ_k g_kᵀ x̂`` (the paper's projection length):
    ``d = (Σ_k g_kᵀ x̂) x̂``. Every task's directional derivative along ``d`` is then the
    same positive multiple of its gradient norm. Computed entirely from the Gramian.

    The pseudo-inverse drops the eigen-directions of the unit Gramian below
    :func:`rank_tolerance` for the gradients' precision (float32 rounding is not
    inverted: linearly dependent float32 gradients give the same direction as
    float64 ones). Task-specific parameters get each task's own ``∇L_k``
    (``task_gradients="raw"``; the authors' ConFIG has no task heads).

    Extra cost per step: the Jacobian or Gramian plus an O(K³) pseudo-inverse.
    Degenerate inputs: zero gradients are left out (weight 0); when no direction has a
    positive equal cosine (e.g. exactly opposite gradients) ``x = 0`` and the update is
    zero.
    """

    properties = ("equal_cosines",)

    gramian_based = True
    default_task_gradients = "raw"

    def __init__(self, **engine_options: Any) -> None:
        super().__init__(**engine_options)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        act = active_tasks(g)
        w = np.zeros(k)
        if not act.any():
            return to_weights(w, gramian)
        gs = g / scale_of(g)
        gu_full, inv_norm, _ = equilibrate(gs)
        gu = gu_full[np.ix_(act, act)]
        m = int(act.sum())
        beta = np.zeros(k)
        rcond = rank_tolerance(m, self.precision)
        beta[act] = np.linalg.pinv(gu, rcond=rcond, hermitian=True) @ np.ones(m)
        coef = inv_norm * beta  # x = Jᵀ coef
        x_norm2 = float(coef @ gs @ coef)
        if x_norm2 <= 1e-20:
            return to_weights(w, gramian)
        length = float(np.ones(k) @ gs @ coef)  # Σ_k g_kᵀ x (unit scale)
        w = coef * (length / x_norm2)
        return to_weights(w, gramian)
