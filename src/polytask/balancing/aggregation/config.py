"""ConFIG: conflict-free update from the pseudo-inverse of the unit gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import gramian_to_numpy, scale_of
from .imtl import active_tasks


@register("config")
class ConFIG(GradientAggregator):
    """ConFIG (Liu, Chu & Thuerey, ICLR 2025, "ConFIG: Towards Conflict-free Training of
    Physics Informed Neural Networks").

    Direction ``x = U⁺ 1`` for the matrix ``U`` of unit task gradients (equal cosine
    with every task; in the row space of ``J``, so ``x = Jᵀ N β`` with
    ``β = (N G N)⁺ 1``), and length ``Σ_k g_kᵀ x̂`` (the paper's projection length):
    ``d = (Σ_k g_kᵀ x̂) x̂``. Every task's directional derivative along ``d`` is then the
    same positive multiple of its gradient norm. Computed entirely from the Gramian.

    Extra cost per step: the Jacobian or Gramian plus an O(K³) pseudo-inverse.
    Degenerate inputs: zero gradients are left out (weight 0); when no direction has a
    positive equal cosine (e.g. exactly opposite gradients) ``x = 0`` and the update is
    zero.
    """

    gramian_based = True

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
        inv_norm = np.zeros(k)
        inv_norm[act] = 1.0 / np.sqrt(np.diag(gs)[act])
        gu = gs[np.ix_(act, act)] * np.outer(inv_norm[act], inv_norm[act])
        beta = np.zeros(k)
        beta[act] = np.linalg.pinv(gu, rcond=1e-10, hermitian=True) @ np.ones(int(act.sum()))
        coef = inv_norm * beta  # x = Jᵀ coef
        x_norm2 = float(coef @ gs @ coef)
        if x_norm2 <= 1e-20:
            return to_weights(w, gramian)
        length = float(np.ones(k) @ gs @ coef)  # Σ_k g_kᵀ x (unit scale)
        w = coef * (length / x_norm2)
        return to_weights(w, gramian)
