"""CAGrad: conflict-averse gradient descent."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import (
    dual_cone_weights,
    gramian_to_numpy,
    project_simplex,
    scale_of,
    warn_solver,
)


def cagrad_weights(g: np.ndarray, c: float, rescale: int = 1,
                   max_iter: int = 200) -> tuple[np.ndarray, bool]:
    """The CAGrad weights on the rows of ``J`` for the Gramian ``g`` (any scale).

    Solves ``min_{w ∈ Δ} wᵀ G 1/K + c ‖g0‖ √(wᵀ G w)`` (SLSQP with the analytic gradient,
    as the paper's code does without it), then ``d = g0 + c ‖g0‖ g_w / ‖g_w‖``, rescaled
    by ``1/(1+c²)`` (``rescale=1``), ``1/(1+c)`` (2) or not (0).

    When the optimal ``g_w`` is 0 (0 in the convex hull, e.g. cancelling gradients
    ``[g, −g, h]``), ``g_w / ‖g_w‖`` is the direction of the solver's rounding
    leftover, not of any gradient; then the optimum of the primal problem
    (worst-task improvement 0) is reached by the projection of ``g0`` onto the dual
    cone ``{d : J d ≥ 0}``, which lies in the ball. Both candidates are evaluated on
    the Gramian and the one with the larger worst-task improvement is kept.
    """
    k = g.shape[0]
    mean = np.full(k, 1.0 / k)
    s = scale_of(g)
    gs = g / s
    g0_norm = float(np.sqrt(max(mean @ gs @ mean, 0.0)))
    if c == 0.0 or g0_norm <= 1e-150:
        return mean, True
    b = gs @ mean
    radius = c * g0_norm
    eps = 1e-16

    def objective(w: np.ndarray) -> tuple[float, np.ndarray]:
        gw = gs @ w
        root = np.sqrt(max(w @ gw, 0.0) + eps)
        return float(w @ b + radius * root), b + radius * gw / root

    from scipy.optimize import minimize

    res = minimize(
        objective, mean, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * k,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                      "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": max_iter, "ftol": 1e-12},
    )
    w = project_simplex(res.x)
    ok = bool(res.success)
    gw_norm = float(np.sqrt(max(w @ gs @ w, 0.0)))
    weights = mean + (radius / gw_norm) * w if gw_norm > 1e-150 else mean.copy()
    # the cancelling case: compare with the dual-cone projection of g0
    proj = dual_cone_weights(gs, mean[None, :])[0]
    dist2 = float((proj - mean) @ gs @ (proj - mean))
    if dist2 <= radius**2 * (1.0 + 1e-9):
        worst = float(np.min(gs @ weights))
        if float(np.min(gs @ proj)) > worst + 1e-12 * g0_norm**2:
            weights, ok = proj, True
    if rescale == 1:
        weights = weights / (1.0 + c**2)
    elif rescale == 2:
        weights = weights / (1.0 + c)
    return weights, ok


@register("cagrad")
class CAGrad(GradientAggregator):
    """Conflict-averse gradient descent (Liu et al., NeurIPS 2021, "Conflict-Averse
    Gradient Descent for Multi-task Learning").

    Maximises the worst task improvement ``min_i g_iᵀ d`` in a ball around the mean
    gradient ``g0``: ``‖d − g0‖ ≤ c ‖g0‖``. Through its dual,
    ``w* = argmin_{w ∈ Δ} g_wᵀ g0 + c ‖g0‖ ‖g_w‖`` and ``d = g0 + c ‖g0‖ g_w / ‖g_w‖``;
    everything is computed from the Gramian. ``c = 0`` gives the mean gradient.

    Args:
        c: radius of the ball, relative to ``‖g0‖`` (paper: 0.4 on NYUv2/Cityscapes,
            0.5 on CelebA-like settings); must be ≥ 0.
        rescale: 1 divides the update by ``1+c²`` (the paper's code default), 2 by
            ``1+c``, 0 leaves it.

    Task-specific parameters get each task's own ``∇L_k`` (the authors' code: each
    task's backward accumulates into its head, only the shared gradient is
    overwritten: ``task_gradients="raw"``). Dead tasks (loss exactly 0) are left out
    (weight 0). On cancelling gradients (0 in the hull) the update is the projection
    of ``g0`` onto the non-conflicting cone (see :func:`cagrad_weights`).

    Extra cost per step: the Jacobian or Gramian plus a K-variable SLSQP solve
    (SciPy) and one K-variable NNLS. A solver failure warns (:class:`SolverWarning`)
    and uses its last iterate projected on the simplex. Degenerate inputs: a zero mean
    gradient gives the zero update.
    """

    properties = ("cagrad",)
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "c": [params.Interval(params.Real, 0, None)],
        "rescale": [params.Options((0, 1, 2))],
        "max_iter": [params.Interval(params.Integral, 1, None)],
    }

    gramian_based = True
    restrict_to_live = True
    default_task_gradients = "raw"

    def __init__(self, c: float = 0.4, rescale: int = 1, max_iter: int = 200,
                 **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if c < 0:
            raise ValueError(f"CAGrad c must be >= 0, got {c}")
        if rescale not in (0, 1, 2):
            raise ValueError(f"CAGrad rescale must be 0, 1 or 2, got {rescale}")
        self.c = c
        self.rescale = rescale
        self.max_iter = max_iter

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        w, ok = cagrad_weights(g, self.c, self.rescale, self.max_iter)
        if not ok:
            warn_solver("CAGrad: SLSQP did not converge; using its last iterate")
        return to_weights(w, gramian)
