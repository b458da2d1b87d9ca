"""Preference-guided gradient methods, as Gramian-based aggregators of the engine.

- :class:`ParetoMTL` (Lin, Zhen, Li, Zhang & Kwong, NeurIPS 2019, "Pareto Multi-Task
  Learning"): one model per preference, kept in its sub-region of loss space;
- :class:`EPO` (Mahapatra & Rajan, ICML 2020, "Multi-Task Learning with User
  Preferences: Gradient Descent with Controlled Ascent in Pareto Optimization"): exact
  Pareto optimal search, a linear program on the Gramian that balances ``p_k L_k``
  while it descends.

Both are weighted sums of the task gradients whose weights depend on the K×K Gramian
and the losses, so they run on any engine path (``jacobian``, ``gramian``,
``representation``) and under ``torch.distributed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..balancing import register
from ..balancing.aggregation._common import to_weights
from ..balancing.aggregation._solvers import gramian_to_numpy, min_norm_weights
from ..balancing.base import GradientAggregator
from ..errors import PolytaskError
from .preferences import (
    PreferenceError,
    PreferenceLike,
    check_preference,
    check_rays,
    loss_direction,
)


@register("pmtl")
class ParetoMTL(GradientAggregator):
    """Pareto MTL (Lin et al., NeurIPS 2019): the ``index``-th of ``len(prefs)`` models.

    The reference vectors ``u_j`` are the preferences' loss-space directions
    (:func:`~polytask.pareto.preferences.loss_direction`; :func:`~polytask.pareto.
    preferences.circle_rays` gives the paper's evenly spaced angles). With ``u = u_index``
    and ``F = L/‖L‖``, the constraints ``G_j = (u_j − u)ᵀ F ≤ 0`` keep the losses in the
    sub-region of ``u``; ``∇G_j ≈ (u_j − u)ᵀ J`` (the normalisation is not
    differentiated, as in the paper and the code).

    - Phase 1 (initial solution): while some constraint is active (``G_j > 0``), step
      along the min-norm element of the active constraints' gradients; it ends at the
      first step with no active constraint, or after ``init_epochs`` epochs (the
      authors' code: at most 2 epochs).
    - Phase 2: the min-norm element of the convex hull of the K task gradients and the
      active constraints' gradients (MGDA with the constraints added).

    In phase 2 the weights are scaled so that ``Σ_k |w_k| = K`` (as the code's
    ``n_tasks / Σ|w|``; phase 1 is not rescaled, as in the code). The paper uses 5 rays
    for two tasks. Differences from the code (Xi-L/ParetoMTL, ``multiMNIST/train.py``):
    its reference vectors are loss-space vectors; polytask takes preferences and
    converts them (:func:`circle_rays` gives the code's vectors exactly). The code takes
    the gradients of every parameter, heads included; polytask's engine uses the shared
    parameters (the heads get ``Σ w_k ∇L_k``), as the paper's MGDA-style derivation.
    Call ``on_epoch_end`` (the Trainer does) to end phase 1.

    Extra cost per step: the Gramian (as MGDA) and a min-norm solve over at most
    ``K + len(prefs) − 1`` vectors (their Gramian is ``A G Aᵀ``, no extra backward).
    """

    gramian_based = True
    requires = ("settings", "losses")

    def __init__(
        self,
        prefs: Sequence[PreferenceLike] | Tensor | None = None,
        index: int = 0,
        init_epochs: int = 2,
        **engine_options: Any,
    ) -> None:
        super().__init__(**engine_options)
        if prefs is None:
            raise PreferenceError("ParetoMTL needs prefs=... (the rays of every model)")
        rays = (
            torch.as_tensor(np.asarray(prefs, dtype=np.float64))
            if not isinstance(prefs, Tensor)
            else prefs.double()
        )
        if rays.ndim != 2 or rays.shape[0] < 2:
            raise PreferenceError(
                f"ParetoMTL needs at least two preference rays, got shape {tuple(rays.shape)}"
            )
        self.prefs = check_rays(rays, rays.shape[1]).tolist()
        if not 0 <= index < len(self.prefs):
            raise PreferenceError(
                f"ParetoMTL index {index} is out of range for {len(self.prefs)} rays"
            )
        self.index = int(index)
        self.init_epochs = int(init_epochs)
        self.epoch = 0
        self.feasible = init_epochs <= 0

    def _directions(self, k: int) -> np.ndarray:
        if len(self.prefs[0]) != k:
            raise PreferenceError(f"ParetoMTL rays have {len(self.prefs[0])} entries for {k} tasks")
        return loss_direction(torch.tensor(self.prefs)).numpy()

    def constraint_rows(self) -> np.ndarray:
        """The rows ``u_j − u`` of the active constraints at the current losses."""
        losses = self.current_losses
        if losses is None:
            raise PolytaskError("ParetoMTL needs the current losses")
        value = losses.detach().double().cpu().numpy()
        u = self._directions(len(value))
        w = u - u[self.index]
        norm = np.linalg.norm(value)
        g = w @ (value / norm if norm > 0 else value)
        return w[g > 0]

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        active = self.constraint_rows()
        self.extras["active_constraints"] = float(len(active))
        if not self.feasible:
            if len(active) == 0:
                self.feasible = True  # phase 1 is over; this step is already phase 2
            else:
                a = active
                sol = np.ones(1) if len(a) == 1 else min_norm_weights(a @ g @ a.T)
                return to_weights(sol @ a, gramian)  # not rescaled in phase 1 (as the code)
        a = np.vstack([np.eye(k), active]) if len(active) else np.eye(k)
        sol = min_norm_weights(a @ g @ a.T)
        return to_weights(self._normalize(sol @ a, k), gramian)

    @staticmethod
    def _normalize(w: np.ndarray, k: int) -> np.ndarray:
        total = np.abs(w).sum()
        return w * (k / total) if total > 0 else w

    def on_epoch_end(self, epoch: int | None = None, train_losses: Mapping | None = None) -> None:
        """Count epochs; phase 1 ends after ``init_epochs``."""
        self.epoch += 1
        if self.epoch >= self.init_epochs:
            self.feasible = True


def _epo_adjustments(losses: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """(r⊙l, μ(r⊙l), a): the non-uniformity μ = KL(l̂ ‖ 1/K) of ``l̂ = r⊙l / Σ r⊙l`` and
    the ascent direction coefficients ``a = r ⊙ (log(K l̂) − μ)`` (EPO, eqs. 3–7)."""
    rl = r * losses
    if (rl < 0).any():
        raise PolytaskError(f"EPO needs non-negative losses, got {losses.tolist()}")
    k = len(rl)
    total = rl.sum()
    lhat = rl / total if total > 0 else np.full(k, 1.0 / k)
    eps = np.finfo(np.float64).eps
    pos = lhat > eps
    mu = float(np.sum(lhat[pos] * np.log(lhat[pos] * k)))
    a = r * (np.log(np.maximum(lhat, eps) * k) - mu)
    return rl, mu, a


def epo_weights(
    gramian: np.ndarray,
    losses: np.ndarray,
    r: np.ndarray,
    eps: float = 1e-4,
    relax: bool = False,
) -> tuple[np.ndarray, str]:
    """EPO's weights ``β`` on the simplex for the Gramian ``C = G Gᵀ``, and the move
    (``"balance"`` or ``"descent"``), by the paper's linear programs (solved with
    SciPy's HiGHS where the authors use cvxpy/GLPK).

    - Balance (``μ > eps``): maximise ``βᵀ C a`` subject to ``(C β)_j ≥ (C a)_j`` for
      the tasks ``j`` with ``(Ca)_j ≤ 0``, ``(C β)_j ≥ 0`` for the worst-off ``j*``
      (largest ``r_j l_j``), ``β`` on the simplex.
    - Descent (``μ ≤ eps``): maximise ``Σ C β`` subject to ``C β ≥ 0`` and
      ``βᵀ C a ≥ −max(0, −max(Ca))`` (dropped when ``relax``).
    """
    from scipy.optimize import linprog

    k = len(losses)
    rl, mu, a = _epo_adjustments(losses, r)
    c = gramian
    ca = c @ a
    a_ub, b_ub = [], []
    if mu > eps:
        move = "balance"
        objective = -ca
        positive = ca > 0
        if positive.any():
            worst = np.flatnonzero(rl == rl.max())
            for j in range(k):
                if j in worst:
                    a_ub.append(-c[j])
                    b_ub.append(0.0)
                elif not positive[j]:
                    a_ub.append(-c[j])
                    b_ub.append(-ca[j])
        else:
            for j in range(k):
                a_ub.append(-c[j])
                b_ub.append(0.0)
    else:
        move = "descent"
        objective = -c.sum(axis=0)
        for j in range(k):
            a_ub.append(-c[j])
            b_ub.append(0.0)
        if not relax:
            # βᵀCa ≥ −max(0, −max(Ca)) = min(0, max(Ca))
            a_ub.append(-ca)
            b_ub.append(-min(0.0, float(ca.max())))
    result = linprog(
        objective,
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=np.array(b_ub) if b_ub else None,
        A_eq=np.ones((1, k)),
        b_eq=[1.0],
        bounds=[(0, None)] * k,
        method="highs",
    )
    if result.status != 0 or result.x is None:
        if move == "descent" and not relax:
            return epo_weights(gramian, losses, r, eps, relax=True)
        # infeasible balance LP (numerically): fall back to the least-conflicting simplex point
        return np.full(k, 1.0 / k), move + "-fallback"
    return np.clip(result.x, 0.0, None), move


@register("epo")
class EPO(GradientAggregator):
    """Exact Pareto optimal search (Mahapatra & Rajan, ICML 2020).

    For a preference ``r`` (``pref``), the target is the point of the front where
    ``r_k L_k`` is the same for every task (polytask's target direction ``L ∝ 1/r``).
    Each step solves a linear program in the K weights ``β`` (on the simplex) from the
    Gramian ``C``: while the normalised ``r ⊙ L`` is non-uniform (``μ > eps``, KL to
    uniform), it moves along the ascent direction that balances them without
    increasing the worst one; once uniform it descends along a direction that decreases
    every loss to first order (:func:`epo_weights`). The update is ``Σ β_k g_k``.
    ``pref`` may be reassigned between steps (Pareto HyperNetworks' PHN-EPO does).

    Differences from the authors' code: the LPs are solved with SciPy's HiGHS instead of
    cvxpy/GLPK; a balance LP that is numerically infeasible falls back to equal weights
    (the code raises). The code multiplies the weighted loss by the number of tasks in
    some scripts; polytask does not (``β`` sums to 1, as in the paper).

    Extra cost per step: the Gramian (as MGDA) and a K-variable linear program.
    """

    gramian_based = True
    requires = ("losses",)

    def __init__(
        self, pref: PreferenceLike | None = None, eps: float = 1e-4, **engine_options: Any
    ) -> None:
        super().__init__(**engine_options)
        if pref is not None and not isinstance(pref, Mapping):
            # negative, non-finite or all-zero: refused now; the length is checked
            # against the tasks at the first step
            check_preference(pref, int(np.asarray(pref).size), normalize=False)
        self.pref = pref
        self.eps = float(eps)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        losses = self.current_losses
        if losses is None:
            raise PolytaskError("EPO needs the current losses")
        r = (
            np.full(k, 1.0 / k)
            if self.pref is None
            else check_preference(self.pref, self.task_names or k).numpy()
        )
        scale = max(float(np.abs(np.diag(g)).max()), 1e-30)
        beta, move = epo_weights(g / scale, losses.detach().double().cpu().numpy(), r, self.eps)
        self.extras["epo_balance"] = 1.0 if move.startswith("balance") else 0.0
        return to_weights(beta, gramian)
