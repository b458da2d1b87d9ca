"""Task-similarity regularisers: mean-regularised MTL and graph-regularised MTL."""

from __future__ import annotations

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import Interval

from polytask.errors import ShapeMismatchError
from polytask.linear._data import UnknownTaskError
from polytask.linear._prox import prox_l1
from polytask.linear.base import LinearMTLBase


class MeanRegularizedMTL(LinearMTLBase):
    """Regularised MTL: each task is a shared model plus a small task-specific offset.

    Evgeniou & Pontil, "Regularized multi-task learning", KDD 2004: w_t = w₀ + v_t with the
    penalty ``(α/T)·Σ_t ||v_t||² + β·||w₀||²``. Minimising over w₀ in closed form
    (w₀ = α·w̄/(α + β), w̄ the mean of the w_t) leaves a penalty on W alone,
    ``(α/T)·Σ_t ||w_t − w̄||² + (αβ/(α + β))·||w̄||²``, which is what is minimised here with
    ``F(W, b)``. α → ∞ forces one common model, α → 0 independent models; ``coef_mean_``
    is w₀. The paper uses the hinge loss (an SVM) and a sum over samples; polytask uses the
    squared/logistic per-task mean loss. Cost per iteration: one data-term gradient and
    O(Td) for the penalty (the problem is smooth: plain accelerated gradient).
    """

    _parameter_constraints: dict = {
        **LinearMTLBase._parameter_constraints,
        "beta": [Interval(Real, 0, None, closed="left")],
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
        warm_start: bool = False,
    ):
        super().__init__(
            alpha, loss=loss, fit_intercept=fit_intercept, tol=tol, max_iter=max_iter,
            warm_start=warm_start,
        )
        self.beta = beta

    def _smooth_penalty(self, W):
        T = W.shape[0]
        mean = W.mean(axis=0)
        D = W - mean
        c = self.alpha * self.beta / (self.alpha + self.beta) if self.alpha + self.beta else 0.0
        val = self.alpha / T * float(np.sum(D * D)) + c * float(mean @ mean)
        grad = 2.0 * self.alpha / T * D + (2.0 * c / T) * mean
        return val, grad

    def fit(self, X, y, task=None):
        """Fit, then set ``coef_mean_`` (the shared model w₀)."""
        super().fit(X, y, task)
        total = self.alpha + self.beta
        self.coef_mean_ = (self.alpha / total if total else 0.0) * self.coef_.mean(axis=0)
        return self


def laplacian(adjacency: np.ndarray) -> np.ndarray:
    """Graph Laplacian D − A of a symmetric non-negative adjacency matrix."""
    return np.diag(adjacency.sum(axis=1)) - adjacency


class GraphRegularizedMTL(LinearMTLBase):
    """Graph-regularised MTL: tasks joined by an edge are pulled towards each other.

    Minimises ``F(W, b) + α·Σ_{s<t} A_st·||w_s − w_t||² + β·||W||_1`` =
    ``F + α·tr(Wᵀ L W) + β·||W||_1`` with L the Laplacian of the task graph ``graph``: a T×T
    symmetric non-negative matrix, or a list of ``(s, t)`` / ``(s, t, weight)`` tuples named
    by task ids (the columns of Y, or the ids given to ``fit``'s ``task``).

    Papers: Evgeniou, Micchelli & Pontil, "Learning multiple tasks with kernel methods",
    JMLR 2005 (graph regulariser); the sparse variant is MALSAR's ``Least_SRMTL`` (Zhou, Chen
    & Ye, MALSAR manual 2011), which writes the graph term as ρ1·||W R||²_F with R an edge
    incidence matrix (= tr(Wᵀ L W) with unit weights) and the loss unnormalised; polytask uses
    the per-task mean loss. With α → ∞ on a connected graph all tasks share one model.
    Cost per iteration: one data-term gradient plus O(T²d) for L·W and the soft-threshold.
    """

    _parameter_constraints: dict = {
        **LinearMTLBase._parameter_constraints,
        "graph": ["array-like", list, None],
        "beta": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        graph=None,
        alpha: float = 1.0,
        *,
        beta: float = 0.0,
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
        self.graph = graph
        self.beta = beta

    def _adjacency(self, T: int) -> np.ndarray:
        g = self.graph
        if g is None:
            raise ShapeMismatchError("GraphRegularizedMTL needs graph= (T×T matrix or edges)")
        is_edges = isinstance(g, list) and all(isinstance(e, tuple) for e in g)
        if is_edges and any(len(e) not in (2, 3) for e in g):
            raise ShapeMismatchError("graph edges must be (s, t) or (s, t, weight) tuples")
        if not is_edges:
            A = np.asarray(g, dtype=float)
            if A.shape != (T, T):
                raise ShapeMismatchError(
                    f"graph has shape {A.shape} but there are {T} tasks; it must be {T}×{T}"
                )
        else:
            lookup = {v: i for i, v in enumerate(self.tasks_.tolist())}
            A = np.zeros((T, T))
            for edge in g:
                s, t = edge[0], edge[1]
                w = float(edge[2]) if len(edge) == 3 else 1.0
                for v in (s, t):
                    if v not in lookup:
                        raise UnknownTaskError(
                            f"graph edge {tuple(edge)!r} names task {v!r}, which is not among "
                            f"the fitted tasks {self.tasks_.tolist()[:20]}"
                        )
                A[lookup[s], lookup[t]] += w
                A[lookup[t], lookup[s]] += w if lookup[s] != lookup[t] else 0.0
        if not np.allclose(A, A.T) or (A < 0).any() or not np.isfinite(A).all():
            raise ShapeMismatchError("graph must be a symmetric, finite, non-negative matrix")
        return A

    def _check_extra(self, data) -> None:
        A = self._adjacency(data.n_tasks)
        np.fill_diagonal(A, 0.0)
        self.laplacian_ = laplacian(A)

    def _smooth_penalty(self, W):
        LW = self.laplacian_ @ W
        return self.alpha * float(np.sum(W * LW)), 2.0 * self.alpha * LW

    def _prox(self, V, step):
        if self.beta == 0.0:
            return V, 0.0
        Z, g = prox_l1(V, step * self.beta)
        return Z, self.beta * g
