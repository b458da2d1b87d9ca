"""IMTL-G: impartial gradient weighting."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import active_tasks, gramian_to_numpy, scale_of

__all__ = ["IMTLG", "active_tasks"]


@register("imtl-g")
class IMTLG(GradientAggregator):
    """IMTL-G, the gradient part of impartial multi-task learning (Liu et al., ICLR 2021,
    "Towards Impartial Multi-task Learning").

    Finds ``d = Σ_k α_k g_k`` with ``Σ α_k = 1`` whose projections on the unit task
    gradients are all equal, ``dᵀ u_1 = … = dᵀ u_K`` (``u_k = g_k/‖g_k‖``): the paper's
    closed form ``α_{2:K} = g_1 Uᵀ (D Uᵀ)⁻¹`` written as one K×K linear system on the
    Gramian and solved by least squares (the minimum-norm solution when the system is
    singular, e.g. for identical gradients; by LU when the exact 1-norm condition
    number of its inverse proves the system well-conditioned, which gives the same
    solution at about half the cost inside a training step).

    Task-specific parameters get each task's own ``∇L_k`` (the paper's Algorithm 1 and
    LibMTL's implementation: ``task_gradients="raw"``).

    Extra cost per step: the Jacobian or Gramian plus an O(K³) solve. Degenerate inputs:
    tasks with a zero gradient are left out of the equal-projection condition and get
    weight 0 (all zero: uniform weights, zero update); exactly opposite gradients give
    equal weights and the zero update.
    """

    properties = ("equal_projections",)

    gramian_based = True
    restrict_to_live = True
    default_task_gradients = "raw"

    def __init__(self, **engine_options: Any) -> None:
        super().__init__(**engine_options)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        two = _two_task_weights(gramian) if gramian.shape == (2, 2) else None
        if two is not None:
            return two
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        act = active_tasks(g)
        w = np.zeros(k)
        m = int(act.sum())
        if m == 0:
            return to_weights(np.full(k, 1.0 / k), gramian)
        ga = (g if m == k else g[np.ix_(act, act)]) / scale_of(g)
        norms = np.sqrt(np.diag(ga))
        proj = ga / norms[:, None]  # proj[t, j] = u_tᵀ g_j
        system = np.empty((m, m))
        np.subtract(proj[0], proj[1:], out=system[:-1])
        system[-1] = 1.0
        rhs = np.zeros(m)
        rhs[-1] = 1.0
        alpha = _solve_well_conditioned(system, rhs)
        if alpha is None:
            alpha = np.linalg.lstsq(system, rhs, rcond=_RCOND)[0]
        w[act] = alpha
        return to_weights(w, gramian)


_RCOND = 1e-12  # the least-squares solve's rank cut (relative singular value)


def _solve_well_conditioned(system: np.ndarray, rhs: np.ndarray) -> np.ndarray | None:
    """``system⁻¹ rhs`` through the explicit inverse (LU) when the system is provably far
    from the least-squares rank cut, else None. With the inverse at hand the 1-norm
    condition number is exact, and ``cond₂(S) ≤ m · ‖S‖₁ ‖S⁻¹‖₁`` (``‖A‖₂ ≤ √m ‖A‖₁``);
    below 1e10 (a factor of 100 under the cut) the least-squares solution is the unique
    one and LU gives it, at about half the SVD-based solve's cost inside a training
    step. A singular or nearly singular system has an inverse of norm about
    ``1/(eps ‖S‖)`` or none, and is declined."""
    m = system.shape[0]
    try:
        inverse = np.linalg.inv(system)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(inverse).all():
        return None
    norm_1 = float(np.abs(system).sum(axis=0).max())
    cond_bound = m * norm_1 * float(np.abs(inverse).sum(axis=0).max())
    if not cond_bound <= _COND_LIMIT:
        return None
    return inverse @ rhs


_COND_LIMIT = 1e10


def _two_task_weights(gramian: Tensor) -> Tensor | None:
    """IMTL-G's weights for two live, non-parallel tasks in closed form: with
    ``n_k = ‖g_k‖``, ``α = (n_1, n_0) / (n_0 + n_1)`` makes ``Σ α_k g_k ∝ u_0 + u_1``,
    whose projections on both unit gradients are equal. None (the general solve) for a
    zero or non-finite gradient, or nearly parallel ones (cosine within 1e-6 of 1, where
    the least-squares solve's rank cut decides). Saves the K = 2 call's fixed cost."""
    g00, g01, g10, g11 = gramian.detach().double().reshape(-1).tolist()
    if not all(math.isfinite(v) for v in (g00, g01, g10, g11)):
        return None
    if g00 <= _TINY or g11 <= _TINY:
        return None
    n0, n1 = math.sqrt(g00), math.sqrt(g11)
    if 1.0 - 0.5 * (g01 + g10) / (n0 * n1) <= 1e-6:
        return None
    w = torch.tensor([n1 / (n0 + n1), n0 / (n0 + n1)], dtype=torch.float64)
    return w if gramian.device.type == "cpu" else w.to(gramian.device)


_TINY = float(np.finfo(np.float64).tiny) * 16  # active_tasks' threshold
