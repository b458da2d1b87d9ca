"""Small dependable solvers on the K×K Gramian, shared by the aggregation methods.

Every solver works in float64 NumPy on a K×K matrix (K = number of tasks), so its cost
is independent of the number of parameters P. Gramians are rescaled to unit scale
before solving (the methods say how their weights transform with the scale), which
keeps gradients of 1e-20 or 1e20 as well conditioned as gradients of 1.

Solvers:

- :func:`min_norm_weights`: the min-norm point of the convex hull of the task
  gradients (MGDA): closed form for K = 2, Wolfe's exact active-set algorithm for
  any larger K (Frank-Wolfe as in Sener & Koltun (2018) on request);
- :func:`alpha_fair_weights`: the positive solution of ``G w = w^(-1/α)`` (Nash-MTL
  for α = 1, FairGrad for any α > 0) by damped Newton on a strictly convex potential;
- :func:`dual_cone_weights`: ``argmin_{v ≥ u} vᵀ G v`` for each row ``u`` (UPGrad,
  DualProj), an exact non-negative least-squares problem per row;
- :func:`project_simplex`: Euclidean projection onto the probability simplex;
- :func:`active_tasks`, :func:`rank_tolerance`: the one test of which task gradients
  are zero and the one cut of the Gramian's numerically zero eigenvalues, shared by
  every method.

Tolerances are relative: to the quantity being compared (a stopping rule on the
norm² compares with the current norm², never with the largest task's), or to the
working precision of the gradients (``precision``: the machine epsilon of the dtype
the Gramian was computed from, float64's when unknown), so one task 10⁶ times smaller
or larger than the others is solved as accurately as equal ones.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from ...errors import PolytaskError


class SolverError(PolytaskError, RuntimeError):
    """A solver failed and no meaningful update can be given."""


class SolverWarning(RuntimeWarning):
    """A solver did not converge; the update uses its last iterate (said loudly)."""


def warn_solver(message: str) -> None:
    """Warn loudly (every time, not once) that a solver did not converge."""
    warnings.warn(message, SolverWarning, stacklevel=3)


def gramian_to_numpy(gramian: Tensor) -> np.ndarray:
    """The Gramian as a symmetric float64 array; non-finite entries raise."""
    g = gramian.detach().to("cpu", torch.float64).numpy()
    if g.ndim != 2 or g.shape[0] != g.shape[1]:
        raise PolytaskError(f"a Gramian must be K×K, got shape {tuple(g.shape)}")
    if not np.isfinite(g).all():
        raise PolytaskError(
            "the Gramian of the task gradients is not finite (a gradient overflowed or is "
            "NaN although the losses are finite)"
        )
    return 0.5 * (g + g.T)


def scale_of(g: np.ndarray) -> float:
    """A positive scale of the Gramian (its largest diagonal entry; 1 when all are 0)."""
    s = float(np.max(np.diag(g))) if g.size else 0.0
    return s if s > 0 else 1.0


FLOAT64_EPS = float(np.finfo(np.float64).eps)


def active_tasks(g: np.ndarray) -> np.ndarray:
    """Mask of the tasks whose gradient is not exactly zero.

    A zero gradient has an exactly zero squared norm in the (float64, rescaled)
    Gramian; any other gradient, however small next to the others, is live: no
    relative threshold drops a task whose gradient is 10⁶ times smaller.
    """
    d = np.diag(g)
    return d > np.finfo(np.float64).tiny * 16


def rank_tolerance(k: int, precision: float = FLOAT64_EPS) -> float:
    """Relative eigenvalue below which a unit-scale Gramian of K tasks is singular.

    Rounding in a Gramian computed from gradients of machine epsilon ``precision``
    is about ``K · precision`` relative to its largest eigenvalue; eigen-directions
    below ten times that are noise, not gradient.
    """
    return 10.0 * max(k, 1) * max(float(precision), FLOAT64_EPS)


def equilibrate(g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(D G D, d, live)`` with ``d_k = 1/‖g_k‖`` on the live tasks (0 on zero ones):
    the Gramian of the unit task gradients, with unit diagonal on live tasks."""
    live = active_tasks(g)
    if live.all():
        d = 1.0 / np.sqrt(np.diag(g))
    else:
        d = np.zeros(g.shape[0])
        d[live] = 1.0 / np.sqrt(np.diag(g)[live])
    return g * np.outer(d, d), d, live


def project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection of each row of ``v`` (or of the vector ``v``) onto the simplex."""
    x = np.atleast_2d(v).astype(np.float64)
    x = x - x.max(axis=1, keepdims=True)  # shift-invariant; keeps huge inputs exact
    k = x.shape[1]
    u = -np.sort(-x, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    idx = np.arange(1, k + 1)
    cond = u - css / idx > 0
    rho = k - 1 - np.argmax(cond[:, ::-1], axis=1)
    theta = css[np.arange(x.shape[0]), rho] / (rho + 1)
    out = np.maximum(x - theta[:, None], 0.0)
    return out if np.ndim(v) == 2 else out[0]


# -- min-norm point of the convex hull (MGDA) ---------------------------------------------


def _line_min(aa: float, ab: float, bb: float) -> float:
    """γ ∈ [0, 1] minimising ‖γ a + (1-γ) b‖² given aᵀa, aᵀb, bᵀb (Sener & Koltun, Alg. 1)."""
    denom = aa + bb - 2.0 * ab
    if denom <= 1e-14 * max(aa, bb, 1e-300):
        return 0.5 if abs(aa - bb) <= 1e-14 * max(aa, bb, 1e-300) else float(aa < bb)
    return float(np.clip((bb - ab) / denom, 0.0, 1.0))


def min_norm_two(g: np.ndarray) -> np.ndarray:
    """Closed form of the 2-task min-norm problem."""
    gamma = _line_min(g[0, 0], g[0, 1], g[1, 1])
    return np.array([gamma, 1.0 - gamma])


def _solve_kkt(kkt: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """The KKT system by LU (fast); least squares when it is singular or ill-posed."""
    try:
        sol = np.linalg.solve(kkt, rhs)
        if np.all(np.isfinite(sol)) and np.allclose(kkt @ sol, rhs, rtol=1e-9, atol=1e-12):
            return sol
    except np.linalg.LinAlgError:
        pass
    return np.linalg.lstsq(kkt, rhs, rcond=None)[0]


def min_norm_wolfe(g: np.ndarray, tol: float = 1e-10, max_iter: int | None = None) -> np.ndarray:
    """Exact min-norm point of the convex hull by Wolfe's algorithm (1976), on the Gramian.

    Finite active-set method: the corral ``S`` stays affinely independent, each major
    step adds the task most opposed to the current point, minor steps drop tasks whose
    weight reaches zero. Works on a unit-scale copy of ``g``.
    """
    k = g.shape[0]
    g = g / scale_of(g)
    max_iter = max_iter or 50 * k + 50
    i0 = int(np.argmin(np.diag(g)))
    w = np.zeros(k)
    w[i0] = 1.0
    active = [i0]
    best = np.inf
    w_best = w
    for _ in range(max_iter):
        gw = g @ w
        norm2 = float(w @ gw)
        if norm2 <= 0.0:  # 0 is in the hull exactly
            return w
        # no progress: round-off in the Gramian (relative to the current norm², so a
        # hull 10⁵ times smaller than the largest gradient is still solved exactly)
        if norm2 >= best * (1.0 - 1e-13):
            return w_best
        best, w_best = norm2, w
        j = int(np.argmin(gw))
        if norm2 - gw[j] <= tol * norm2 or j in active:
            return w
        active.append(j)
        for _minor in range(k + 1):
            s = np.array(active)
            m = len(s)
            # the affine minimiser over the corral, from the KKT system equilibrated by
            # D = diag(1/‖g_s‖) (y = D⁻¹ v): gradients of very different sizes stay
            # well conditioned
            dsc = 1.0 / np.sqrt(np.maximum(np.diag(g)[s], 1e-300))
            kkt = np.zeros((m + 1, m + 1))
            kkt[:m, :m] = g[np.ix_(s, s)] * np.outer(dsc, dsc)
            kkt[:m, m] = dsc
            kkt[m, :m] = dsc
            rhs = np.zeros(m + 1)
            rhs[m] = 1.0
            y = _solve_kkt(kkt, rhs)[:m]
            v = dsc * y
            positive = y > 1e-14 * max(float(np.abs(y).max()), 1e-300)
            if np.all(positive):
                w = np.zeros(k)
                w[s] = v / v.sum()
                break
            ws = w[s]
            neg = ~positive
            theta = np.min(ws[neg] / np.maximum(ws[neg] - v[neg], 1e-300))
            theta = float(np.clip(theta, 0.0, 1.0))
            ws = ws + theta * (v - ws)
            ws[ws <= 1e-300] = 0.0
            ws[np.flatnonzero(neg)[np.argmin(ws[neg])]] = 0.0  # the blocking task leaves
            keep = ws > 0
            if not keep.any():  # numerical corner: keep the best single vertex
                keep[int(np.argmax(ws))] = True
            w = np.zeros(k)
            w[s[keep]] = ws[keep]
            w /= w.sum()
            active = [int(i) for i in s[keep]]
    warn_solver(f"MGDA (Wolfe) did not converge in {max_iter} iterations; using its last iterate")
    return w


def min_norm_frank_wolfe(g: np.ndarray, max_iter: int = 250, tol: float = 1e-5) -> np.ndarray:
    """Min-norm point by Frank-Wolfe with exact line search (Sener & Koltun 2018, Alg. 2).

    Initialised, as in the paper's code, at the best point on any segment between two
    task gradients (all K² pairs in closed form, vectorised); stops when the weights
    change by less than ``tol`` (L1) or after ``max_iter`` iterations. Each iteration
    costs O(K²).
    """
    k = g.shape[0]
    g = g / scale_of(g)
    d = np.diag(g)
    aa, bb, ab = d[:, None], d[None, :], g
    denom = aa + bb - 2.0 * ab
    ok = denom > 1e-14 * np.maximum(np.maximum(aa, bb), 1e-300)
    safe = np.where(ok, denom, 1.0)
    gamma = np.where(ok, np.clip((bb - ab) / safe, 0.0, 1.0), 0.5)
    cost = gamma**2 * aa + 2 * gamma * (1 - gamma) * ab + (1 - gamma) ** 2 * bb
    np.fill_diagonal(cost, np.inf)
    if k == 1:
        return np.ones(1)
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    w = np.zeros(k)
    w[i] += gamma[i, j]
    w[j] += 1.0 - gamma[i, j]
    for _ in range(max_iter):
        gw = g @ w
        t = int(np.argmin(gw))
        nc = _line_min(float(w @ gw), float(gw[t]), float(g[t, t]))
        new = nc * w
        new[t] += 1.0 - nc
        if np.abs(new - w).sum() < tol:
            return new
        w = new
    return w


def min_norm_weights(
    g: np.ndarray,
    solver: str = "auto",
    exact_max_tasks: int | None = None,
    max_iter: int = 250,
    tol: float = 1e-5,
) -> np.ndarray:
    """Weights on the simplex of the min-norm point of the convex hull of the gradients.

    ``solver``: ``"auto"`` (closed form for K = 2, Wolfe's exact algorithm for any
    larger K: it costs about as much as Frank-Wolfe and stops at the min-norm point,
    where Frank-Wolfe stops up to several % away for K ≳ 16), ``"exact"`` or
    ``"frank-wolfe"``. ``exact_max_tasks`` (None: no limit) switches ``"auto"`` to
    Frank-Wolfe above that many tasks.
    """
    k = g.shape[0]
    if k == 1:
        return np.ones(1)
    if solver == "auto":
        use_exact = exact_max_tasks is None or k <= exact_max_tasks
        solver = "closed" if k == 2 else ("exact" if use_exact else "frank-wolfe")
    if solver == "closed" or (solver == "exact" and k == 2):
        return min_norm_two(g)
    if solver == "exact":
        return min_norm_wolfe(g)
    if solver == "frank-wolfe":
        return min_norm_frank_wolfe(g, max_iter=max_iter, tol=tol)
    raise ValueError(f"unknown min-norm solver {solver!r}; use 'auto', 'exact' or 'frank-wolfe'")


def is_pareto_stationary(g: np.ndarray, rtol: float = 1e-9) -> bool:
    """Whether 0 lies in the convex hull of the gradients (to relative tolerance)."""
    w = min_norm_wolfe(g) if g.shape[0] > 2 else min_norm_weights(g)
    return float(w @ g @ w) <= rtol * scale_of(g)


# -- α-fair weights: G w = w^(-1/α) (Nash-MTL, FairGrad) ---------------------------------


def _potential(g: np.ndarray, w: np.ndarray, alpha: float) -> float:
    quad = 0.5 * float(w @ g @ w)
    if alpha == 1.0:
        return quad - float(np.sum(np.log(w)))
    p = 1.0 - 1.0 / alpha
    return quad - float(np.sum(w**p)) / p


def alpha_fair_weights(
    g: np.ndarray, alpha: float = 1.0, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, bool, int]:
    """Positive ``w`` with ``G w = w^(-1/α)``, by damped Newton.

    The equation is the stationarity condition of the strictly convex potential
    ``½ wᵀGw − Σ_i f(w_i)`` on ``w > 0`` with ``f = log`` (α = 1) or
    ``f(w) = w^(1-1/α) / (1-1/α)``; Newton steps with backtracking (Armijo, staying in
    ``w > 0``) converge globally and quadratically near the solution. The solution
    exists iff some direction improves every task (0 is not in the convex hull of the
    gradients); otherwise the potential is unbounded and the iteration reports failure.
    Convergence means a residual of at most 1e-6 relative to each task's
    ``w_k^(-1/α)``. Large α (≳ 10) makes the system ill-conditioned (``G w ≈ 1``) and
    may not reach it.

    Returns ``(w, converged, iterations)`` for the unscaled ``g``.
    """
    s = scale_of(g)
    gs = g / s
    d = np.maximum(np.diag(gs), 1e-12)
    w = d ** (-alpha / (alpha + 1.0))
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        power = w ** (-1.0 / alpha)
        grad = gs @ w - power
        if np.linalg.norm(grad) <= tol * max(1.0, np.linalg.norm(power)):
            converged = True
            break
        hess = gs + np.diag(power / (alpha * w))
        try:
            step = np.linalg.solve(hess, -grad)
        except np.linalg.LinAlgError:
            break
        decrement = float(-grad @ step)
        if decrement < 0:  # not a descent direction: numerical trouble
            break
        f0 = _potential(gs, w, alpha)
        if decrement <= 1e-20 * max(1.0, abs(f0)):  # at round-off level: done
            converged = True
            break
        t = 1.0
        neg = step < 0
        if neg.any():
            t = min(1.0, 0.99 * float(np.min(-w[neg] / step[neg])))
        if t == 1.0 and decrement <= 1e-10 * max(1.0, abs(f0)):
            # quadratic-convergence zone: comparing potentials is at round-off level
            w = w + step
            continue
        while t > 1e-12 and _potential(gs, w + t * step, alpha) > f0 - 0.25 * t * decrement:
            t *= 0.5
        if t <= 1e-12:
            converged = bool(decrement <= 1e-12 * max(1.0, abs(f0)))
            break
        w = w + t * step
        if not np.all(np.isfinite(w)) or w.max() > 1e12:
            break
    # the verdict is the residual of the equation itself, whatever stopped the loop
    if np.all(np.isfinite(w)) and (w > 0).all():
        power = w ** (-1.0 / alpha)
        converged = bool((np.abs(gs @ w - power) <= 1e-6 * power).all())
    else:
        converged = False
    # back to the scale of g: G w = w^(-1/α) with G = s·Gs gives w = ws · s^(-α/(α+1))
    return w * s ** (-alpha / (alpha + 1.0)), converged, it


# -- projection onto the dual cone (UPGrad, DualProj) --------------------------------------


def dual_cone_weights(g: np.ndarray, u: np.ndarray, precision: float = FLOAT64_EPS) -> np.ndarray:
    """For each row ``u_i``, ``v_i = argmin_{v ≥ u_i} vᵀ G v`` (Quinton & Rey 2024, Prop. 1).

    ``Jᵀ v_i`` is then the projection of ``Jᵀ u_i`` onto the dual cone
    ``{x : J x ≥ 0}``. The cone does not change when each row of ``J`` is divided by
    its norm, so the problem is solved on the Gramian of the unit gradients
    ``Ĝ = D G D`` (``v = D v̂``, ``v̂ ≥ D⁻¹ u``): a task whose gradient is 10⁶ times
    smaller than the others constrains the projection exactly as a unit one does.
    With ``Ĝ = L Lᵀ`` and ``v̂ = D⁻¹u + s``, ``s ≥ 0``, each problem is the non-negative
    least-squares problem ``min ‖Lᵀ s + Lᵀ D⁻¹ u‖``, solved exactly (Lawson-Hanson,
    SciPy); eigen-directions below :func:`rank_tolerance` (rounding) are dropped.

    A problem whose ``Jᵀ u_i`` conflicts with no task is solved by ``v_i = u_i`` (its
    KKT conditions), without the factorisation.

    A task with an exactly zero gradient constrains nothing and moves nothing: its
    entry of ``v_i`` is its lower bound ``u_ik`` (the least weight the definition
    allows), never an arbitrary multiple. Returns the K' × K matrix of the ``v_i``.
    """
    try:
        from scipy.optimize import nnls
    except ImportError as error:  # pragma: no cover - scipy is a declared extra
        raise ImportError("UPGrad/DualProj need SciPy: pip install 'polytask[solvers]'") from error
    u = np.atleast_2d(u).astype(np.float64)
    out = u.copy()
    gu, d, live = equilibrate(g)
    if not live.any():  # every gradient is zero: any v ≥ u is optimal; take v = u
        return out
    idx = np.flatnonzero(live)
    gl = gu if len(idx) == len(live) else gu[np.ix_(idx, idx)]
    lowers = u[:, idx] / d[idx]  # D⁻¹ u on the live tasks, one row per problem
    # v = u is optimal exactly when Ĝ D⁻¹u ≥ 0 (the KKT conditions with every bound
    # active: Jᵀu conflicts with no task), the common case; no factorisation then
    open_rows = np.flatnonzero((lowers @ gl < 0.0).any(axis=1))
    if not len(open_rows):
        return out
    if len(idx) == 2:  # two live tasks: the projection in closed form
        for i in open_rows:
            out[i, idx] = _two_task_projection(gl, lowers[i]) * d[idx]
        return out
    evals, evecs = np.linalg.eigh(gl)
    keep = evals > rank_tolerance(len(idx), precision) * max(float(evals.max()), 1e-300)
    lt = (evecs[:, keep] * np.sqrt(evals[keep])).T  # r × K_live, with Ĝ = L Lᵀ
    for i in open_rows:
        lower = lowers[i]
        size = float(np.abs(lower).max())
        if size == 0.0:  # only zero-gradient tasks in u: its projection is 0 = Jᵀ u
            continue
        lower = lower / size  # each problem at unit scale (it is positively homogeneous)
        s, _ = nnls(lt, -(lt @ lower), maxiter=50 * len(idx) + 100)
        out[i, idx] = (lower + s) * size * d[idx]
    return out


def _two_task_projection(gu: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """``argmin_{v ≥ lower} vᵀ Ĝ v`` for a 2×2 unit-diagonal Gramian where ``Ĝ lower``
    has a negative entry. ``lowerᵀ Ĝ lower ≥ 0`` leaves exactly one, ``j``; raising
    ``v_j`` until ``(Ĝ v)_j = 0`` gives ``v_j = −Ĝ_ji lower_i``, and then
    ``(Ĝ v)_i = lower_i (1 − Ĝ_ij²) ≥ 0``: the KKT conditions hold with ``v_i`` at its
    bound."""
    g_lower = gu @ lower
    j = int(np.argmin(g_lower))
    i = 1 - j
    v = lower.copy()
    v[j] = -gu[j, i] * lower[i]
    return v
