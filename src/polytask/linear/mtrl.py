"""Multi-task relationship learning (MTRL): a learned task covariance couples the tasks."""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from polytask.linear._fista import FistaResult, fista
from polytask.linear._prox import prox_squared_trace
from polytask.linear.base import LinearMTLBase


def covariance_step(W: np.ndarray, eps: float) -> np.ndarray:
    """argmin over {Ω ⪰ 0, tr Ω = 1} of tr(Wᵀ Ω⁻¹ W): (W Wᵀ + εI)^{1/2} / tr(·)."""
    T = W.shape[0]
    A = W @ W.T
    A = A + eps * max(np.trace(A) / T, 1e-12) * np.eye(T)
    lam, P = np.linalg.eigh(A)
    root = (P * np.sqrt(np.maximum(lam, 0.0))) @ P.T
    return root / np.trace(root)


class MTRL(LinearMTLBase):
    """Multi-task relationship learning: weights drawn from a matrix-normal prior whose task
    covariance Ω is learned; positively, negatively or un-correlated tasks are all modelled.

    Minimises ``F(W, b) + (α/2)·||W||²_F + (β/2)·tr(Wᵀ Ω⁻¹ W)`` over W and
    ``Ω ⪰ 0, tr Ω = 1`` (jointly convex). For fixed W the best Ω is closed-form,
    Ω = (W Wᵀ)^{1/2} / tr((W Wᵀ)^{1/2}), and there tr(Wᵀ Ω⁻¹ W) = ||W||²_* (squared trace
    norm).

    Paper: Zhang & Yeung, "A convex formulation for learning task relationships in multi-task
    learning", UAI 2010. Solvers: ``solver="alternating"`` is the paper's: alternate a W step
    (a smooth convex problem; polytask solves it in the primal by accelerated gradient, the
    paper by a dual QP/SMO) with the closed-form Ω step, adding εI to W Wᵀ before the matrix
    square root so Ω stays invertible (as the paper and its code do; ε = ``eps`` × mean
    diagonal). It converges slowly once Ω nears singularity. ``solver="prox"`` (default)
    minimises the same objective with Ω eliminated, ``F + (α/2)||W||²_F + (β/2)||W||²_*``,
    by FISTA with the closed-form prox of the squared trace norm (a squared-ℓ1 prox on the
    singular values), then applies the closed-form Ω step once; both reach the same
    optimum (tested). ``task_covariance_`` is Ω, ``task_correlation_`` its normalisation
    to unit diagonal. Cost: per FISTA iteration one data-term gradient and one thin SVD
    (prox); per alternating step an inner solve and one T×T eigen-decomposition.
    """

    _parameter_constraints: dict = {
        **LinearMTLBase._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="neither")],
        "max_outer_iter": [Interval(Integral, 1, None, closed="left")],
        "eps": [Interval(Real, 0, None, closed="neither")],
        "solver": [StrOptions({"prox", "alternating"})],
    }

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        beta: float = 1.0,
        loss: str = "squared",
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 1000,
        max_outer_iter: int = 50,
        eps: float = 1e-8,
        solver: str = "prox",
        warm_start: bool = False,
    ):
        super().__init__(
            alpha, loss=loss, fit_intercept=fit_intercept, tol=tol, max_iter=max_iter,
            warm_start=warm_start,
        )
        self.beta = beta
        self.max_outer_iter = max_outer_iter
        self.eps = eps
        self.solver = solver

    def objective(self, loss_value: float, W: np.ndarray, omega: np.ndarray) -> float:
        """The full objective given the data term's value."""
        quad = float(np.sum(W * np.linalg.solve(omega, W)))
        return loss_value + 0.5 * self.alpha * float(np.sum(W * W)) + 0.5 * self.beta * quad

    def _solve(self, loss, data, W0, b0, warm) -> FistaResult:
        res = self._solve_prox(loss, W0, b0, warm) if self.solver == "prox" else (
            self._solve_alternating(loss, data, W0, b0, warm)
        )
        omega = covariance_step(res.x[0], self.eps)
        self.task_covariance_ = omega
        d = np.sqrt(np.diag(omega))
        self.task_correlation_ = omega / np.outer(d, d)
        return res

    def _solve_prox(self, loss, W0, b0, warm) -> FistaResult:
        with_b = b0 is not None

        def smooth(xs, need_grad):
            W = xs[0]
            f, gW, gb = loss.value_grad(W, xs[1] if with_b else None, need_grad)
            val = f + 0.5 * self.alpha * float(np.sum(W * W))
            if not need_grad:
                return val, None
            g = [gW + self.alpha * W]
            return val, (g + [gb] if with_b else g)

        def prox(vs, step):
            W, g = prox_squared_trace(vs[0], step * self.beta)
            return ([W, vs[1]] if with_b else [W]), self.beta * g

        self.n_outer_iter_ = 1
        return fista(
            smooth, prox, [W0, b0] if with_b else [W0], tol=self.tol, max_iter=self.max_iter,
            lipschitz=self._start_lipschitz(warm),
        )

    def _solve_alternating(self, loss, data, W0, b0, warm) -> FistaResult:
        T = data.n_tasks
        with_b = b0 is not None
        if warm and getattr(self, "task_covariance_", np.zeros(0)).shape == (T, T):
            omega = self.task_covariance_.copy()
        else:
            omega = np.eye(T) / T
        x = [W0, b0] if with_b else [W0]
        path: list[float] = []
        n_iter, L = 0, self._start_lipschitz(warm)
        converged = False
        inner_ok = True
        for _ in range(self.max_outer_iter):
            omega_inv = np.linalg.inv(omega)

            def smooth(xs, need_grad, omega_inv=omega_inv):
                W = xs[0]
                f, gW, gb = loss.value_grad(W, xs[1] if with_b else None, need_grad)
                OW = omega_inv @ W
                val = f + 0.5 * self.alpha * float(np.sum(W * W))
                val += 0.5 * self.beta * float(np.sum(W * OW))
                if not need_grad:
                    return val, None
                g = [gW + self.alpha * W + self.beta * OW]
                return val, (g + [gb] if with_b else g)

            res = fista(
                smooth, lambda vs, step: (vs, 0.0), x, tol=self.tol, max_iter=self.max_iter,
                lipschitz=L,
            )
            x, L = res.x, res.lipschitz
            n_iter += res.n_iter
            inner_ok = inner_ok and res.converged
            omega = covariance_step(x[0], self.eps)
            f, _, _ = loss.value_grad(x[0], x[1] if with_b else None, False)
            path.append(self.objective(f, x[0], omega))
            if len(path) > 1 and abs(path[-2] - path[-1]) <= self.tol * max(abs(path[-1]), 1e-12):
                converged = True
                break
        if not inner_ok:
            warnings.warn(
                "MTRL: an inner W step stopped at max_iter before converging",
                ConvergenceWarning,
                stacklevel=3,
            )
        self.n_outer_iter_ = len(path)
        return FistaResult(x=x, objective=path, n_iter=n_iter, converged=converged, lipschitz=L)
