"""Small multi-task problems and optimality checks shared by the tests of polytask.linear."""

from __future__ import annotations

import numpy as np

from polytask.linear._data import build_task_data
from polytask.linear._loss import make_loss


def shared_problem(n=80, d=12, T=4, support=4, noise=0.1, seed=0, offset=2.0):
    """One X, T regression tasks whose weights share the first ``support`` features."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = np.zeros((T, d))
    W[:, :support] = rng.standard_normal((T, support))
    Y = X @ W.T + noise * rng.standard_normal((n, T)) + offset
    return X, Y, W


def logistic_problem(n=120, d=8, T=3, seed=0):
    """Long-form binary tasks with labels in {0, 1}."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    W = rng.standard_normal((T, d))
    task = rng.integers(0, T, n)
    z = np.einsum("ij,ij->i", X, W[task]) + 0.5 * rng.standard_normal(n)
    return X, (z > 0).astype(int), task


def data_gradient(est, X, y, task=None):
    """Gradient of the data term at the fitted (coef_, intercept_), and the loss object."""
    data, tasks, _ = build_task_data(np.asarray(X, float), np.asarray(y, float), task)
    if est.loss == "logistic":
        data = data.map_targets(lambda t, v: np.where(v == est.classes_[t][1], 1.0, -1.0))
    loss = make_loss(est.loss, data, est.fit_intercept)
    b = est.intercept_ if loss.has_intercept_variable else None
    f, gW, gb = loss.value_grad(est.coef_, b)
    return gW, gb, f
