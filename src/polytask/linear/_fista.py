"""Accelerated proximal gradient (FISTA; Beck & Teboulle, SIAM J. Imaging Sci. 2009) with
backtracking line search and adaptive restart (O'Donoghue & Candès, FoCM 2015).

Variables are a list of arrays ("blocks"). ``smooth(xs, need_grad)`` returns the smooth
part's value and its gradient blocks; ``prox(vs, step)`` returns the proximal point of the
non-smooth part for the step and that part's value there. Cost per iteration: one gradient
of the smooth part and one prox, plus one smooth value per backtracking trial.

Stopping rule: the prox-gradient step from the extrapolated point is small relative to the
iterate, ``||x⁺ − z|| ≤ tol · max(||x⁺||, 1e-12)`` (a fixed point of the prox-gradient map
is a minimiser), the analogue of scikit-learn's coordinate-descent test on the largest update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _dot(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(sum(np.vdot(x, y) for x, y in zip(a, b)))


def _sq(a: list[np.ndarray]) -> float:
    return _dot(a, a)


@dataclass
class FistaResult:
    """Solution blocks, objective after each iteration, iterations run, convergence flag."""

    x: list[np.ndarray]
    objective: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    lipschitz: float = 1.0


def fista(
    smooth,
    prox,
    x0: list[np.ndarray],
    *,
    tol: float,
    max_iter: int,
    lipschitz: float = 1.0,
    callback=None,
) -> FistaResult:
    """Minimise smooth(x) + g(x) from ``x0``; see the module docstring."""
    x = [np.array(v, dtype=float, copy=True) for v in x0]
    L = max(float(lipschitz), 1e-12)
    x_prev = [v.copy() for v in x]
    t = 1.0
    z = x
    objective: list[float] = []
    converged = False
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - it is read after the loop
        fz, gz = smooth(z, True)
        if gz is None or not np.isfinite(fz):  # extrapolated outside the domain: restart
            z, t = x, 1.0
            fz, gz = smooth(z, True)
        while True:
            x_new, g_new = prox([zi - gi / L for zi, gi in zip(z, gz)], 1.0 / L)
            diff = [a - b for a, b in zip(x_new, z)]
            f_new, _ = smooth(x_new, False)
            bound = fz + _dot(gz, diff) + 0.5 * L * _sq(diff)
            if f_new <= bound + 1e-12 * max(abs(fz), 1.0) or _sq(diff) == 0.0:
                break
            L *= 2.0
        objective.append(f_new + g_new)
        if callback is not None:
            callback(it, x_new)
        step = np.sqrt(_sq(diff))
        scale = max(np.sqrt(_sq(x_new)), 1e-12)
        if step <= tol * scale:
            x = x_new
            converged = True
            break
        # gradient-based restart: momentum pointing uphill is dropped
        moved = [a - b for a, b in zip(x_new, x)]
        if _dot(diff, moved) < 0 or (len(objective) > 1 and objective[-1] > objective[-2]):
            t = 1.0
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        beta = (t - 1.0) / t_next
        x_prev, x = x, x_new
        z = [a + beta * (a - b) for a, b in zip(x, x_prev)]
        t = t_next
        L *= 0.95  # let the step grow back after a conservative backtrack
    return FistaResult(x=x, objective=objective, n_iter=it, converged=converged, lipschitz=L)
