"""Clustered multi-task learning: the convex relaxation of Zhou, Chen & Ye (NIPS 2011)."""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval

from polytask.errors import ShapeMismatchError
from polytask.linear._fista import FistaResult, fista
from polytask.linear._prox import project_cmtl_set
from polytask.linear.base import LinearMTLBase


class ClusteredMTL(LinearMTLBase):
    """Convex clustered MTL: tasks fall into ``n_clusters`` groups of similar weight vectors.

    Minimises over W and a relaxed cluster matrix M (T×T)
    ``F(W, b) + α·η(1 + η)·tr(Wᵀ (ηI + M)⁻¹ W)``, η = β/α, subject to
    ``0 ⪯ M ⪯ I, tr M = k``. The integer problem has M = F Fᵀ with F the normalised
    cluster-assignment matrix; the relaxation is jointly convex in (W, M) (a matrix-fractional
    function). α is the cluster penalty (ρ1), β the global ridge-like term (ρ2).

    Paper: Zhou, Chen & Ye, "Clustered multi-task learning via alternating structure
    optimization", NIPS 2011 (the convex relaxation of Jacob, Bach & Vert, NIPS 2008).
    Solver (as in the reference code, MALSAR ``Least_CMTL``): accelerated projected gradient
    jointly in (W, M); the projection of M eigen-decomposes it and projects the eigenvalues
    onto {0 ≤ λ ≤ 1, Σλ = k}. Cost per iteration: one data-term gradient, a T×T solve and a
    T×T eigen-decomposition. MALSAR starts from W = Σ X_tᵀ y_t and uses the unnormalised loss;
    polytask starts from W = 0 and uses the per-task mean loss. ``task_cluster_matrix_`` is
    M, ``labels_`` the clusters read off M's top-k eigenvectors (k-means on them).
    """

    _parameter_constraints: dict = {
        **LinearMTLBase._parameter_constraints,
        "alpha": [Interval(Real, 0, None, closed="neither")],
        "beta": [Interval(Real, 0, None, closed="neither")],
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_clusters: int = 2,
        alpha: float = 1.0,
        *,
        beta: float = 1.0,
        loss: str = "squared",
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 1000,
        warm_start: bool = False,
    ):
        super().__init__(
            alpha, loss=loss, fit_intercept=fit_intercept, tol=tol, max_iter=max_iter,
            warm_start=warm_start,
        )
        self.n_clusters = n_clusters
        self.beta = beta

    def _check_extra(self, data) -> None:
        if self.n_clusters > data.n_tasks:
            raise ShapeMismatchError(
                f"n_clusters={self.n_clusters} but there are only {data.n_tasks} tasks"
            )

    def cluster_penalty(self, W: np.ndarray, M: np.ndarray) -> float:
        """α·η(1+η)·tr(Wᵀ(ηI + M)⁻¹W) at (W, M)."""
        eta = self.beta / self.alpha
        c = self.alpha * eta * (1.0 + eta)
        A = eta * np.eye(W.shape[0]) + M
        return c * float(np.sum(W * np.linalg.solve(A, W)))

    def _solve(self, loss, data, W0, b0, warm) -> FistaResult:
        T = data.n_tasks
        k = float(self.n_clusters)
        eta = self.beta / self.alpha
        c = self.alpha * eta * (1.0 + eta)
        eye = np.eye(T)
        with_b = b0 is not None
        if warm and getattr(self, "task_cluster_matrix_", np.zeros(0)).shape == (T, T):
            M0 = self.task_cluster_matrix_.copy()
        else:
            M0 = eye * (k / T)

        def smooth(xs, need_grad):
            W, M = xs[0], xs[1]
            f, gW, gb = loss.value_grad(W, xs[2] if with_b else None, need_grad)
            A = eta * eye + 0.5 * (M + M.T)
            if np.linalg.eigvalsh(A)[0] <= 1e-12 * eta:  # outside the domain
                return np.inf, None
            AiW = np.linalg.solve(A, W)
            val = f + c * float(np.sum(W * AiW))
            if not need_grad:
                return val, None
            gM = -c * (AiW @ AiW.T)
            grads = [gW + 2.0 * c * AiW, gM]
            if with_b:
                grads.append(gb)
            return val, grads

        def prox(vs, step):
            M, _, _ = project_cmtl_set(vs[1], k)
            return ([vs[0], M, vs[2]] if with_b else [vs[0], M]), 0.0

        x0 = [W0, M0, b0] if with_b else [W0, M0]
        res = fista(
            smooth, prox, x0, tol=self.tol, max_iter=self.max_iter,
            lipschitz=self._start_lipschitz(warm),
        )
        M = res.x[1]
        self.task_cluster_matrix_ = M
        self.labels_ = self._labels(M)
        res.x = [res.x[0]] + res.x[2:]
        return res

    def _labels(self, M: np.ndarray) -> np.ndarray:
        from sklearn.cluster import KMeans

        k = self.n_clusters
        lam, P = np.linalg.eigh(M)
        if k == 1:
            return np.zeros(M.shape[0], dtype=int)
        emb = P[:, -k:]
        return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(emb)
