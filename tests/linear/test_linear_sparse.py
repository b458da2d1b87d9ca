"""MultiTaskL21 and MultiTaskDirty: sklearn agreement, shared sparsity, optimality (KKT)."""

import numpy as np
import pytest
from _linear_helpers import data_gradient, logistic_problem, shared_problem
from sklearn.linear_model import MultiTaskElasticNet, MultiTaskLasso

from polytask.linear import MultiTaskDirty, MultiTaskL21
from polytask.linear import _loss as loss_module

TIGHT = dict(tol=1e-10, max_iter=50000)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.5])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_l21_equals_sklearn_multitask_lasso_and_enet(l1_ratio, fit_intercept):
    X, Y, _ = shared_problem()
    ref_cls = MultiTaskLasso if l1_ratio == 1.0 else MultiTaskElasticNet
    kw = {} if l1_ratio == 1.0 else {"l1_ratio": l1_ratio}
    ref = ref_cls(alpha=0.05, fit_intercept=fit_intercept, tol=1e-14, max_iter=200000, **kw)
    ref.fit(X, Y)
    ours = MultiTaskL21(alpha=0.05, l1_ratio=l1_ratio, fit_intercept=fit_intercept, **TIGHT)
    ours.fit(X, Y)
    assert np.abs(ours.coef_ - ref.coef_).max() < 1e-6
    assert np.abs(ours.intercept_ - ref.intercept_).max() < 1e-6


def test_l21_selects_the_same_features_in_every_task():
    X, Y, W = shared_problem(n=100, d=20, T=5, support=3)
    m = MultiTaskL21(alpha=0.1, **TIGHT).fit(X, Y)
    used = np.abs(m.coef_) > 1e-10
    # each feature is used by all tasks or by none, and the true support is found
    assert np.all(used.all(axis=0) | ~used.any(axis=0))
    assert set(np.flatnonzero(used.any(axis=0))) == {0, 1, 2}
    # a per-task lasso of the same strength does not share its support
    from sklearn.linear_model import Lasso

    per_task = np.array([Lasso(alpha=0.1 / np.sqrt(5)).fit(X, Y[:, t]).coef_ for t in range(5)])
    assert not np.all((per_task != 0).all(axis=0) | (per_task == 0).all(axis=0))


def _check_group_kkt(G, W, alpha, q, atol):
    """−G_j ∈ α ∂||W_j||_q for each feature column j."""
    for j in range(W.shape[1]):
        g, w = -G[:, j], W[:, j]
        if np.all(w == 0):
            dual = np.linalg.norm(g, 2 if q == 2 else 1)
            assert dual <= alpha * (1 + 1e-6) + atol
        elif q == 2:
            assert np.allclose(g, alpha * w / np.linalg.norm(w), atol=atol)
        else:  # ℓ∞ subgradient: mass alpha on the entries of largest |w|, same signs
            top = np.isclose(np.abs(w), np.abs(w).max(), atol=1e-7)
            assert np.abs(g).sum() == pytest.approx(alpha, abs=atol)
            assert np.all(np.abs(g[~top]) <= atol)
            assert np.all(g[top] * np.sign(w[top]) >= -atol)


@pytest.mark.parametrize("q", [2, "inf"])
def test_l21_optimality_conditions_with_missing_targets(q):
    X, Y, _ = shared_problem(n=60, d=10, T=4, seed=3)
    Y[np.random.default_rng(0).random(Y.shape) < 0.3] = np.nan
    m = MultiTaskL21(alpha=0.08, q=q, **TIGHT).fit(X, Y)
    G, _, _ = data_gradient(m, X, Y)
    _check_group_kkt(G, m.coef_, 0.08, q, atol=1e-6)


def test_l21_logistic_long_form_optimality():
    X, y, task = logistic_problem()
    m = MultiTaskL21(alpha=0.02, loss="logistic", **TIGHT).fit(X, y, task=task)
    G, gb, _ = data_gradient(m, X, y, task)
    assert np.abs(gb).max() < 1e-6  # the intercepts are unpenalised
    _check_group_kkt(G, m.coef_, 0.02, 2, atol=1e-6)
    assert set(np.unique(m.predict(X, task=task))) <= {0, 1}
    p = m.predict_proba(X, task=task)
    assert np.all((p > 0.5) == (m.predict(X, task=task) == 1))


def test_masked_and_long_forms_and_both_gradient_paths_agree(monkeypatch):
    X, Y, _ = shared_problem(n=50, d=8, T=3, seed=4)
    Y[np.random.default_rng(1).random(Y.shape) < 0.3] = np.nan
    wide = MultiTaskL21(alpha=0.05, **TIGHT).fit(X, Y)
    rows, cols = np.nonzero(~np.isnan(Y))
    long = MultiTaskL21(alpha=0.05, **TIGHT).fit(X[rows], Y[rows, cols], task=cols)
    monkeypatch.setattr(loss_module, "_GRAM_BUDGET", 0)  # products with X instead of Grams
    wide_direct = MultiTaskL21(alpha=0.05, **TIGHT).fit(X, Y)
    long_direct = MultiTaskL21(alpha=0.05, **TIGHT).fit(X[rows], Y[rows, cols], task=cols)
    for other in (long, wide_direct, long_direct):
        assert np.abs(other.coef_ - wide.coef_).max() < 1e-7
        assert np.abs(other.intercept_ - wide.intercept_).max() < 1e-7
    # the long form predicts each row for its own task
    pred = long.predict(X[rows], task=cols)
    assert np.allclose(pred, wide.predict(X)[rows, cols], atol=1e-6)


def test_alpha_max_zeroes_everything_and_warm_start_continues():
    X, Y, _ = shared_problem()
    m = MultiTaskL21(**TIGHT)
    a = m.alpha_max(X, Y)
    assert np.all(m.set_params(alpha=a * 1.0001).fit(X, Y).coef_ == 0)
    assert np.any(m.set_params(alpha=a * 0.9).fit(X, Y).coef_ != 0)
    cold = MultiTaskL21(alpha=0.05, tol=1e-8).fit(X, Y)
    warm = MultiTaskL21(alpha=0.06, tol=1e-8, warm_start=True).fit(X, Y)
    warm.set_params(alpha=0.05).fit(X, Y)
    assert np.abs(warm.coef_ - cold.coef_).max() < 1e-5
    assert warm.n_iter_ <= cold.n_iter_


def test_dirty_optimality_and_split_of_supports():
    rng = np.random.default_rng(5)
    n, d, T = 120, 10, 4
    X = rng.standard_normal((n, d))
    W = np.zeros((T, d))
    W[:, :3] = 1.0  # shared by every task
    W[1, 7] = 2.0  # one task-specific exception
    Y = X @ W.T + 0.05 * rng.standard_normal((n, T))
    for q in ("inf", 2):
        m = MultiTaskDirty(alpha=0.05, beta=0.03, q=q, **TIGHT).fit(X, Y)
        G, _, _ = data_gradient(m, X, Y)
        P, Q = m.coef_group_, m.coef_elementwise_
        assert np.allclose(m.coef_, P + Q)
        _check_group_kkt(G, P, 0.05, q, atol=1e-6)
        # −G ∈ β ∂||Q||_1
        on = Q != 0
        assert np.allclose(-G[on], 0.03 * np.sign(Q[on]), atol=1e-6)
        assert np.all(np.abs(G[~on]) <= 0.03 + 1e-6)
    m = MultiTaskDirty(alpha=0.05, beta=0.03, **TIGHT).fit(X, Y)
    assert np.all(np.abs(m.coef_group_[:, :3]) > 0.5)
    assert abs(m.coef_[1, 7]) > 1.0 and np.all(m.coef_group_[:, 7] == 0)


def test_l21_and_dirty_match_cvxpy():
    cp = pytest.importorskip("cvxpy")
    X, Y, _ = shared_problem(n=40, d=6, T=3, seed=7)
    n = X.shape[0]
    for est, pen in [
        (MultiTaskL21(alpha=0.1, q="inf", **TIGHT), lambda W: 0.1 * cp.sum(cp.max(cp.abs(W), 0))),
        (MultiTaskL21(alpha=0.1, **TIGHT), lambda W: 0.1 * cp.sum(cp.norm(W, 2, axis=0))),
    ]:
        est.fit(X, Y)
        W, b = cp.Variable((3, 6)), cp.Variable(3)
        obj = cp.sum_squares(X @ W.T + np.ones((n, 1)) @ cp.reshape(b, (1, 3), order="C") - Y)
        prob = cp.Problem(cp.Minimize(obj / (2 * n) + pen(W)))
        prob.solve()
        assert np.abs(W.value - est.coef_).max() < 1e-4
