"""Trace norm (low rank, KKT, cvxpy) and mean/graph regularisation (closed forms)."""

import numpy as np
import pytest
from _linear_helpers import data_gradient, logistic_problem, shared_problem

from polytask.linear import GraphRegularizedMTL, MeanRegularizedMTL, MultiTaskTraceNorm

TIGHT = dict(tol=1e-10, max_iter=50000)


def _low_rank_problem(n=100, d=15, T=8, rank=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((T, rank)) @ rng.standard_normal((rank, d))
    Y = X @ W.T + 0.3 * rng.standard_normal((n, T))
    return X, Y


def _check_trace_kkt(G, W, alpha, atol):
    """−G ∈ α ∂||W||_*: −G = α(U Vᵀ + U⊥ Z V⊥ᵀ) with ||Z||₂ ≤ 1."""
    U, s, Vt = np.linalg.svd(W, full_matrices=False)
    r = int(np.sum(s > 1e-8 * max(s.max(), 1e-300)))
    U, Vt = U[:, :r], Vt[:r]
    assert np.allclose(U.T @ (-G) @ Vt.T, alpha * np.eye(r), atol=atol)
    rest = -G - alpha * U @ Vt
    assert np.linalg.norm(rest, 2) <= alpha * (1 + 1e-6) + atol
    return r


def test_trace_norm_is_low_rank_and_optimal():
    X, Y = _low_rank_problem()
    m = MultiTaskTraceNorm(alpha=0.3, **TIGHT).fit(X, Y)
    G, _, _ = data_gradient(m, X, Y)
    rank = _check_trace_kkt(G, m.coef_, 0.3, atol=1e-6)
    assert rank == 2
    # the unregularised least-squares solution has full rank
    assert np.linalg.matrix_rank(MultiTaskTraceNorm(alpha=0.0, **TIGHT).fit(X, Y).coef_) == 8


def test_trace_norm_logistic_kkt_and_cvxpy():
    X, y, task = logistic_problem(T=4)
    m = MultiTaskTraceNorm(alpha=0.03, loss="logistic", **TIGHT).fit(X, y, task=task)
    G, gb, _ = data_gradient(m, X, y, task)
    assert np.abs(gb).max() < 1e-6
    _check_trace_kkt(G, m.coef_, 0.03, atol=1e-6)
    cp = pytest.importorskip("cvxpy")
    X, Y = _low_rank_problem(n=40, d=6, T=4)
    m = MultiTaskTraceNorm(alpha=0.2, fit_intercept=False, **TIGHT).fit(X, Y)
    W = cp.Variable((4, 6))
    cp.Problem(cp.Minimize(cp.sum_squares(X @ W.T - Y) / 80 + 0.2 * cp.normNuc(W))).solve()
    assert np.abs(W.value - m.coef_).max() < 1e-4


def _vectorised_quadratic_solution(X, Y, penalty_matrix):
    """argmin Σ_t (1/2n)||y_t − X w_t||² + vec(W)ᵀ K vec(W) for W T×d: a linear system."""
    n, d = X.shape
    T = Y.shape[1]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    H = np.kron(np.eye(T), Xc.T @ Xc / n) + 2 * penalty_matrix
    rhs = (Xc.T @ Yc / n).T.ravel()
    return np.linalg.solve(H, rhs).reshape(T, d)


def test_mean_regularized_equals_its_closed_form_and_interpolates():
    X, Y, _ = shared_problem(n=60, d=6, T=4, support=6, seed=2)
    T, d = 4, 6
    a, b = 0.5, 0.2
    m = MeanRegularizedMTL(alpha=a, beta=b, **TIGHT).fit(X, Y)
    C = np.eye(T) - np.ones((T, T)) / T  # centring across tasks
    c = a * b / (a + b)
    K = np.kron(a / T * C + c / T**2 * np.ones((T, T)), np.eye(d))
    assert np.abs(m.coef_ - _vectorised_quadratic_solution(X, Y, K)).max() < 1e-7
    assert np.allclose(m.coef_mean_, a / (a + b) * m.coef_.mean(0))
    # α → ∞: one common model; α → 0: independent (ridge-free) models
    big = MeanRegularizedMTL(alpha=1e3, beta=0.0, tol=1e-8, max_iter=5000).fit(X, Y)
    assert np.ptp(big.coef_, axis=0).max() < 1e-2 * np.abs(big.coef_).max()
    small = MeanRegularizedMTL(alpha=1e-9, beta=0.0, **TIGHT).fit(X, Y)
    ols = np.linalg.lstsq(np.c_[X, np.ones(60)], Y, rcond=None)[0][:6].T
    assert np.abs(small.coef_ - ols).max() < 1e-5


def test_graph_regularized_closed_form_and_equivalence_with_mean():
    X, Y, _ = shared_problem(n=60, d=6, T=4, support=6, seed=3)
    A = np.array([[0, 1, 0, 0], [1, 0, 2, 0], [0, 2, 0, 0], [0, 0, 0, 0]], float)
    m = GraphRegularizedMTL(A, alpha=0.3, **TIGHT).fit(X, Y)
    L = np.diag(A.sum(1)) - A
    K = np.kron(0.3 * L, np.eye(6))
    assert np.abs(m.coef_ - _vectorised_quadratic_solution(X, Y, K)).max() < 1e-7
    edges = [(0, 1), (1, 2, 2.0)]
    by_edges = GraphRegularizedMTL(edges, alpha=0.3, **TIGHT).fit(X, Y)
    assert np.allclose(by_edges.coef_, m.coef_, atol=1e-8)
    # the complete graph with weights 1/T² is mean regularisation with β = 0
    T = 4
    full = GraphRegularizedMTL(np.ones((T, T)) / T**2, alpha=0.7, **TIGHT).fit(X, Y)
    mean = MeanRegularizedMTL(alpha=0.7, beta=0.0, **TIGHT).fit(X, Y)
    assert np.abs(full.coef_ - mean.coef_).max() < 1e-7


def test_graph_l1_term_is_sparse_and_satisfies_kkt():
    X, Y, _ = shared_problem(n=60, d=8, T=3, support=2, seed=4)
    A = np.ones((3, 3)) - np.eye(3)
    m = GraphRegularizedMTL(A, alpha=0.2, beta=0.05, **TIGHT).fit(X, Y)
    G, _, _ = data_gradient(m, X, Y)
    G = G + 2 * 0.2 * m.laplacian_ @ m.coef_
    on = m.coef_ != 0
    assert (~on).any()
    assert np.allclose(-G[on], 0.05 * np.sign(m.coef_[on]), atol=1e-6)
    assert np.all(np.abs(G[~on]) <= 0.05 + 1e-6)
