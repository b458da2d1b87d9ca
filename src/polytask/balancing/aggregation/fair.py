"""Nash-MTL and FairGrad: weights solving ``G w = w^(-1/α)``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ... import params
from .. import scaling
from ..base import BalanceContext, GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import (
    SolverError,
    active_tasks,
    alpha_fair_weights,
    gramian_to_numpy,
    is_pareto_stationary,
    warn_solver,
)


def fair_weights(g: np.ndarray, alpha: float, max_iter: int, method: str,
                 extras: dict[str, float]) -> np.ndarray:
    """Solve ``G w = w^(-1/α)`` on the tasks with a non-zero gradient.

    Tasks with a zero gradient get weight 0. When the others are Pareto-stationary
    (0 in their convex hull: no direction improves them all, so no solution exists)
    every weight is 0 and ``extras["pareto_stationary"] = 1``. A Newton failure
    anywhere else warns loudly and uses the last iterate.
    """
    k = g.shape[0]
    w = np.zeros(k)
    act = active_tasks(g)
    extras["pareto_stationary"] = 0.0
    if not act.any():
        extras["pareto_stationary"] = 1.0
        return w
    sub = g[np.ix_(act, act)]
    sol, converged, iterations = alpha_fair_weights(sub, alpha, max_iter=max_iter)
    extras["solver_iterations"] = float(iterations)
    if not converged:
        if is_pareto_stationary(sub, rtol=1e-7):
            extras["pareto_stationary"] = 1.0
            return w
        if not np.all(np.isfinite(sol)) or (sol <= 0).any():
            raise SolverError(f"{method}: the Newton solver diverged on G={g.tolist()}")
        warn_solver(
            f"{method}: Newton did not converge in {max_iter} iterations "
            f"(residual above tolerance); using its last iterate"
        )
    w[act] = sol
    return w


class _FairBase(GradientAggregator):
    gramian_based = True
    _alpha: float = 1.0
    _name = ""

    def __init__(self, max_norm: float, max_iter: int, **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if max_norm < 0:
            raise ValueError(f"{self._name} max_norm must be >= 0, got {max_norm}")
        self.max_norm = max_norm
        self.max_iter = max_iter

    def after_backward(self, ctx: BalanceContext) -> None:
        if self.max_norm > 0:
            grads = [p for p in ctx.shared_params if p.grad is not None]
            if grads:
                norm = scaling.clip_grad_norm_(grads, self.max_norm)  # unscaled norm
                self.extras["shared_grad_norm"] = norm


@register("nash-mtl")
class NashMTL(_FairBase):
    """Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game").

    The Nash bargaining solution: ``d = Σ_k α_k g_k`` with ``Gα = 1/α`` (each task's
    directional derivative ``g_kᵀ d = 1/α_k``). The paper solves a sequence of convex
    problems (CCP with cvxpy); here the same equation is solved as the minimiser of
    the self-concordant potential ``½ αᵀGα − Σ log α_k`` by damped Newton (global,
    quadratic convergence). The authors' code divides the Gramian by its Frobenius
    norm ``n`` for conditioning but keeps the factor in the constraint
    (``α_k · n · (G/n · α)_k ≥ 1``), so it solves ``Gα = 1/α`` for the unscaled
    Gramian; so does polytask, whatever ``normalize`` (the solver works at unit scale
    anyway): ``α_kᵀ(Gα)_k = 1`` for every live task, at any loss scale. As in the
    authors' code, the weights multiply the losses (task-specific parameters get
    ``Σ α_k ∇L_k``: ``task_gradients="weighted"``) and the shared gradient is then
    clipped to ``max_norm``.

    Args:
        update_weights_every: recompute the weights every k steps and reuse them in
            between (then a step costs one weighted backward: the paper's speed-up).
        max_norm: clip norm of the shared gradient (paper's code: 1.0; 0 disables).
        normalize: solve on the Gramian divided by its Frobenius norm (the authors'
            conditioning step); the solution of ``Gα = 1/α`` is the same either way.
        max_iter: Newton iterations.

    Extra cost per step: the Jacobian or Gramian (every ``update_weights_every``
    steps) plus ~5-15 Newton steps of O(K³). Degenerate inputs: zero gradients get
    weight 0; at a Pareto-stationary point (no solution) the weights are all 0 and
    ``extras["pareto_stationary"] = 1``; any other solver failure warns.
    """

    properties = ("nash",)
    scaling = "invariant"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "update_weights_every": [params.Interval(params.Integral, 1, None)],
        "max_norm": [params.Interval(params.Real, 0, None)],
        "normalize": ["boolean"],
        "max_iter": [params.Interval(params.Integral, 1, None)],
    }

    _name = "Nash-MTL"

    def __init__(self, update_weights_every: int = 1, max_norm: float = 1.0,
                 normalize: bool = True, max_iter: int = 100,
                 **engine_options: Any) -> None:
        super().__init__(max_norm=max_norm, max_iter=max_iter, **engine_options)
        if update_weights_every < 1:
            raise ValueError(f"update_weights_every must be >= 1, got {update_weights_every}")
        self.update_weights_every = update_weights_every
        self.normalize = normalize
        self.register_buffer("cached_weights", torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        from ._common import resize_buffers_on_load

        resize_buffers_on_load(self, state_dict, prefix, ("cached_weights",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def precomputed_weights(self, ctx: BalanceContext) -> Tensor | None:
        k = len(ctx.losses)
        if self.cached_weights.shape == (k,) and int(self.step) % self.update_weights_every:
            cached = self.cached_weights.clone()
            if bool(((cached == 0) & ctx.live.cpu()).any()):
                return None  # a task dead when the weights were solved is live again
            return cached.masked_fill(~ctx.live.cpu(), 0.0)
        return None

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        fro = float(np.linalg.norm(g)) if self.normalize else 1.0
        fro = fro if fro > 0 else 1.0
        # (G/n) β = 1/β has β = √n · α with G α = 1/α: undo the factor, as the authors'
        # constraint α·n·(G/n α) ≥ 1 does
        w = fair_weights(g / fro, 1.0, self.max_iter, "Nash-MTL", self.extras) / np.sqrt(fro)
        weights = to_weights(w, gramian)
        self.cached_weights = weights.detach().cpu().clone()
        return weights


@register("fairgrad")
class FairGrad(_FairBase):
    """FairGrad (Ban & Ji, ICML 2024, "Fair Resource Allocation in Multi-Task Learning").

    α-fair allocation of the update among tasks: ``d = Σ_k w_k g_k`` with
    ``G w = w^{-1/α}`` (``g_kᵀ d = w_k^{-1/α}``); α = 1 is proportional fairness
    (Nash-MTL's equation), α → ∞ approaches max-min fairness. The authors solve the
    equation by SciPy ``least_squares``; here by damped Newton on the strictly convex
    potential ``½ wᵀGw − Σ w^{1−1/α}/(1−1/α)``.

    As in the authors' code (``overwrite_grad``: "to match the sum loss"), the shared
    update is ``K · Σ_k w_k g_k`` (``scale_by_tasks=True``; the reported weights are
    ``K w``), then clipped to ``max_norm``; task-specific parameters get each task's
    own ``∇L_k`` (their per-task backward passes accumulate there:
    ``task_gradients="raw"``). ``scale_by_tasks=False`` gives the paper's ``d``.

    Args:
        alpha: α > 0 (authors' default 1.0; their QM9 script uses 2.0).
        max_norm: clip norm of the shared gradient (authors' code: 1.0; 0 disables).
        max_iter: Newton iterations.
        scale_by_tasks: multiply the shared update by K (authors' code).

    Extra cost per step: the Jacobian or Gramian plus ~5-20 Newton steps of O(K³).
    Degenerate inputs: as :class:`NashMTL`.
    """

    properties = ("fair",)
    scaling = "none"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "alpha": [params.Interval(params.Real, 0, None, closed="neither")],
        "max_norm": [params.Interval(params.Real, 0, None)],
        "max_iter": [params.Interval(params.Integral, 1, None)],
        "scale_by_tasks": ["boolean"],
    }

    _name = "FairGrad"
    default_task_gradients = "raw"

    def __init__(self, alpha: float = 1.0, max_norm: float = 1.0, max_iter: int = 100,
                 scale_by_tasks: bool = True, **engine_options: Any) -> None:
        super().__init__(max_norm=max_norm, max_iter=max_iter, **engine_options)
        if alpha <= 0:
            raise ValueError(f"FairGrad alpha must be > 0, got {alpha}")
        self.alpha = float(alpha)
        self.scale_by_tasks = bool(scale_by_tasks)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        w = fair_weights(g, self.alpha, self.max_iter, "FairGrad", self.extras)
        return to_weights(w * (g.shape[0] if self.scale_by_tasks else 1.0), gramian)
