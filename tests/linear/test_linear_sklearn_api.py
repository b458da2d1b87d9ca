"""scikit-learn compatibility (check_estimator, clone, Pipeline, GridSearchCV), bad input,
convergence warnings and the cross-validation helper."""

import numpy as np
import pytest
from _linear_helpers import logistic_problem, shared_problem
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import check_estimator

from polytask.errors import LabelRangeError, ShapeMismatchError
from polytask.linear import (
    MTRL,
    ClusteredMTL,
    GraphRegularizedMTL,
    MeanRegularizedMTL,
    MissingTargetError,
    MultiTaskCV,
    MultiTaskDirty,
    MultiTaskL21,
    MultiTaskTraceNorm,
    UnknownTaskError,
    regularization_path,
)

ALL = [
    MultiTaskL21(),
    MultiTaskL21(q="inf", l1_ratio=0.5),
    MultiTaskTraceNorm(),
    MultiTaskDirty(),
    MeanRegularizedMTL(),
    GraphRegularizedMTL(graph=np.zeros((1, 1))),
    ClusteredMTL(n_clusters=1),
    MTRL(),
]

# Checks whose single-X, single-configuration assumptions do not hold, and why:
EXPECTED_FAILURES = {
    # the graph is T×T; sklearn's multi-output check fits 5 tasks with a 1-task graph
    "GraphRegularizedMTL": {"check_regressor_multioutput"},
    # the defaults (α = β = 1) shrink hard; n_clusters must not exceed the 1 task sklearn fits
    "ClusteredMTL": {"check_regressors_train", "check_methods_sample_order_invariance"},
}


@pytest.mark.parametrize("est", ALL, ids=lambda e: type(e).__name__)
def test_check_estimator(est):
    results = check_estimator(est, on_fail=None)
    failed = {r["check_name"] for r in results if r["status"] == "failed"}
    assert failed <= EXPECTED_FAILURES.get(type(est).__name__, set()), failed


def test_clone_pipeline_and_grid_search():
    X, Y, _ = shared_problem(n=60, d=6, T=3)
    pipe = make_pipeline(StandardScaler(), MultiTaskL21(alpha=0.1))
    pipe.fit(X, Y)
    assert pipe.predict(X).shape == (60, 3)
    grid = GridSearchCV(MultiTaskTraceNorm(), {"alpha": [0.01, 0.1, 1.0]}, cv=3).fit(X, Y)
    assert grid.best_params_["alpha"] in (0.01, 0.1, 1.0)
    c = clone(MTRL(alpha=0.3, beta=0.2))
    assert c.get_params()["beta"] == 0.2


def test_bad_input_errors_name_what_is_wrong():
    X, Y, _ = shared_problem(n=30, d=4, T=3)
    Y[:, 1] = np.nan
    with pytest.raises(MissingTargetError, match="column 1"):
        MultiTaskL21().fit(X, Y)
    X, Y, _ = shared_problem(n=30, d=4, T=3)
    with pytest.raises(ShapeMismatchError, match="30 rows but y has 29"):
        MultiTaskL21().fit(X, Y[:29])
    with pytest.raises(ShapeMismatchError, match="task has 29"):
        MultiTaskL21().fit(X, Y[:, 0], task=np.zeros(29))
    with pytest.raises(InvalidParameterError, match="'alpha'"):
        MultiTaskL21(alpha=-1.0).fit(X, Y)
    with pytest.raises(InvalidParameterError, match="'beta'"):
        MultiTaskDirty(beta=-0.5).fit(X, Y)
    Xbad = X.copy()
    Xbad[3, 2] = np.inf
    with pytest.raises(ValueError, match="X"):
        MultiTaskL21().fit(Xbad, Y)
    m = MultiTaskL21(alpha=0.1).fit(X, Y[:, 0], task=np.repeat(["a", "b", "c"], 10))
    with pytest.raises(UnknownTaskError, match="'z'.*known tasks"):
        m.predict(X[:2], task=["a", "z"])
    with pytest.raises(ShapeMismatchError, match="n_clusters=4"):
        ClusteredMTL(n_clusters=4).fit(X, Y)
    with pytest.raises(ShapeMismatchError, match="graph has shape"):
        GraphRegularizedMTL(np.zeros((2, 2))).fit(X, Y)
    with pytest.raises(UnknownTaskError, match="'q'"):
        GraphRegularizedMTL([("a", "q")]).fit(X, Y[:, 0], task=np.repeat(["a", "b", "c"], 10))
    yb = (Y > Y.mean(0)).astype(float)
    yb[:, 2] = 1.0
    with pytest.raises(LabelRangeError, match="task 2"):
        MultiTaskL21(loss="logistic").fit(X, yb)


def test_not_converging_warns():
    X, Y, _ = shared_problem()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        MultiTaskL21(alpha=0.01, max_iter=2).fit(X, Y)


def test_prediction_shapes():
    X, Y, _ = shared_problem(n=30, d=4, T=3)
    m = MultiTaskL21(alpha=0.01).fit(X, Y)
    assert m.predict(X).shape == (30, 3)
    assert m.predict(X, task=2).shape == (30,)
    assert np.allclose(m.predict(X, task=2), m.predict(X)[:, 2])
    assert MultiTaskL21(alpha=0.01).fit(X, Y[:, 0]).predict(X).shape == (30,)
    Xl, yl, task = logistic_problem()
    lm = MultiTaskL21(alpha=0.01, loss="logistic").fit(Xl, yl, task=task)
    assert lm.predict_proba(Xl).shape == (120, 3)
    assert lm.decision_function(Xl, task=task).shape == (120,)
    assert not hasattr(m, "predict_proba")


def test_path_is_warm_started_and_cv_picks_a_sensible_alpha():
    X, Y, W = shared_problem(n=80, d=15, T=4, support=3, noise=0.5)
    alphas, coefs, _, iters = regularization_path(MultiTaskL21(tol=1e-6), X, Y, n_alphas=8)
    assert np.all(np.diff(alphas) < 0)
    assert np.all(coefs[0] == 0)  # the path starts at alpha_max
    cold = [MultiTaskL21(alpha=a, tol=1e-6).fit(X, Y).n_iter_ for a in alphas]
    assert iters.sum() < sum(cold)
    for k, a in enumerate(alphas):
        ref = MultiTaskL21(alpha=a, tol=1e-10, max_iter=20000).fit(X, Y).coef_
        assert np.abs(coefs[k] - ref).max() < 1e-3
    cv = MultiTaskCV(MultiTaskL21(tol=1e-6), n_alphas=8, cv=3).fit(X, Y)
    assert cv.cv_scores_.shape == (8, 3)
    assert alphas[-1] <= cv.alpha_ < alphas[0]
    used = np.abs(cv.coef_).sum(axis=0) > 0
    assert used[:3].all()
    rows, cols = np.nonzero(np.ones_like(Y, bool))
    long = MultiTaskCV(MultiTaskL21(tol=1e-6), n_alphas=4, cv=3).fit(X[rows], Y[rows, cols],
                                                                      task=cols)
    assert long.predict(X[:5], task=[0, 1, 2, 3, 0]).shape == (5,)


def test_readme_example_runs():
    X, Y, _ = shared_problem(n=60, d=6, T=3)
    from sklearn.linear_model import MultiTaskLasso

    m = MultiTaskL21(alpha=0.05, tol=1e-10, max_iter=20000).fit(X, Y)
    ref = MultiTaskLasso(alpha=0.05, tol=1e-12, max_iter=100000).fit(X, Y)
    assert np.abs(m.coef_ - ref.coef_).max() < 1e-6
    Xl, yl, task_ids = logistic_problem()
    r = MTRL(beta=0.02, loss="logistic").fit(Xl, yl, task=task_ids)
    assert r.task_correlation_.shape == (3, 3)
    assert r.predict_proba(Xl[:4], task=task_ids[:4]).shape == (4,)
