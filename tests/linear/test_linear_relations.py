"""ClusteredMTL (cluster recovery, optimality in W and M) and MTRL (task covariance)."""

import numpy as np
import pytest
from _linear_helpers import data_gradient, logistic_problem
from sklearn.exceptions import ConvergenceWarning

from polytask.linear import MTRL, ClusteredMTL
from polytask.linear._prox import project_cmtl_set
from polytask.linear.mtrl import covariance_step

TIGHT = dict(tol=1e-9, max_iter=50000)


def _clustered_problem(n=60, d=10, per_cluster=3, seed=0):
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((2, d))
    W = np.repeat(centres, per_cluster, axis=0) + 0.1 * rng.standard_normal((2 * per_cluster, d))
    X = rng.standard_normal((n, d))
    Y = X @ W.T + 0.5 * rng.standard_normal((n, W.shape[0]))
    return X, Y, np.repeat([0, 1], per_cluster)


def test_clustered_mtl_recovers_clusters_and_is_optimal():
    X, Y, truth = _clustered_problem()
    m = ClusteredMTL(n_clusters=2, alpha=0.5, beta=0.05, **TIGHT).fit(X, Y)
    assert (m.labels_ == truth).all() or (m.labels_ == 1 - truth).all()
    M = m.task_cluster_matrix_
    same = truth[:, None] == truth[None, :]
    assert M[same].min() > M[~same].max()
    assert np.trace(M) == pytest.approx(2.0, abs=1e-8)
    # stationarity in W (the problem is smooth in W)
    eta = 0.05 / 0.5
    c = 0.5 * eta * (1 + eta)
    A = eta * np.eye(6) + M
    G, _, _ = data_gradient(m, X, Y)
    gW = G + 2 * c * np.linalg.solve(A, m.coef_)
    assert np.abs(gW).max() < 1e-6
    # M is a fixed point of the projected gradient step (optimality over the constraint set)
    AiW = np.linalg.solve(A, m.coef_)
    gM = -c * AiW @ AiW.T
    for step in (0.1, 1.0, 10.0):
        M_step, _, _ = project_cmtl_set(M - step * gM, 2)
        assert np.abs(M_step - M).max() < 1e-5


def test_clustered_mtl_beats_any_other_cluster_matrix():
    X, Y, _ = _clustered_problem(seed=1)
    m = ClusteredMTL(n_clusters=2, alpha=0.5, beta=0.05, **TIGHT).fit(X, Y)
    best = m.cluster_penalty(m.coef_, m.task_cluster_matrix_)
    rng = np.random.default_rng(0)
    for _ in range(20):
        M, _, _ = project_cmtl_set(rng.standard_normal((6, 6)) * 2, 2)
        assert m.cluster_penalty(m.coef_, M) >= best - 1e-9


def test_clustered_mtl_logistic_runs_in_the_long_form():
    X, y, task = logistic_problem(T=4)
    m = ClusteredMTL(n_clusters=2, alpha=0.05, beta=0.01, loss="logistic", tol=1e-7)
    m.fit(X, y, task=task)
    G, gb, _ = data_gradient(m, X, y, task)
    assert np.abs(gb).max() < 1e-5
    assert m.score(X, y, task=task) > 0.8


def test_covariance_step_is_the_minimiser():
    rng = np.random.default_rng(2)
    W = rng.standard_normal((4, 9))
    omega = covariance_step(W, 1e-12)
    assert np.trace(omega) == pytest.approx(1.0)
    best = np.trace(W.T @ np.linalg.solve(omega, W))
    for _ in range(30):
        B = rng.standard_normal((4, 4))
        other = B @ B.T + 1e-3 * np.eye(4)
        other /= np.trace(other)
        assert np.trace(W.T @ np.linalg.solve(other, W)) >= best - 1e-9


def test_mtrl_learns_negative_and_positive_task_correlation():
    rng = np.random.default_rng(3)
    n, d = 40, 20
    u, v = rng.standard_normal(d), rng.standard_normal(d)
    W = np.stack([u, -u, u + 0.1 * rng.standard_normal(d), v])
    X = rng.standard_normal((n, d))
    Y = X @ W.T + 0.3 * rng.standard_normal((n, 4))
    m = MTRL(alpha=0.01, beta=0.1, **TIGHT).fit(X, Y)
    C = m.task_correlation_
    assert C[0, 1] < -0.9 and C[0, 2] > 0.9
    assert abs(C[0, 3]) < 0.5
    assert np.allclose(np.diag(C), 1.0)
    omega = m.task_covariance_
    assert np.allclose(omega, covariance_step(m.coef_, m.eps))
    # the paper's alternating solver: the objective never increases and it approaches the
    # same optimum as the squared-trace-norm prox solver
    alt = MTRL(alpha=0.01, beta=0.1, solver="alternating", tol=1e-9, max_iter=2000,
               max_outer_iter=30)
    with pytest.warns(ConvergenceWarning):
        alt.fit(X, Y)
    path = alt.objective_path_
    assert np.all(np.diff(path) <= 1e-9 * abs(path[0]))
    _, _, f = data_gradient(m, X, Y)
    best = m.objective(f, m.coef_, omega)
    assert best <= path[-1] + 1e-9
    assert (path[-1] - best) / best < 2e-3
    assert np.abs(alt.task_correlation_ - C).max() < 0.05
