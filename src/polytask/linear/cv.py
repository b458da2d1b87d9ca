"""Warm-started regularisation paths and cross-validation for every linear estimator.

One helper serves all estimators (instead of a ``*CV`` twin of each): the path runs from
the largest α down, each fit warm-started from the previous solution, as scikit-learn's
``enet_path`` does; :class:`MultiTaskCV` scores the path on K folds and refits the best α.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, _fit_context, clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils._param_validation import Interval
from sklearn.utils.validation import check_is_fitted

from polytask.linear.base import LinearMTLBase


def alpha_grid(estimator, X, y, task=None, n_alphas: int = 10, eps: float = 1e-3) -> np.ndarray:
    """A decreasing geometric grid of α: from ``alpha_max`` (all-zero solution) down to
    ``eps·alpha_max`` for the sparse/low-rank estimators; 10 … 10·eps for the smooth ones."""
    top = estimator.alpha_max(X, y, task) if hasattr(estimator, "alpha_max") else 10.0
    top = top if top > 0 else 1.0
    return np.geomspace(top, top * eps, n_alphas)


def regularization_path(estimator, X, y, task=None, alphas=None, n_alphas: int = 10,
                        eps: float = 1e-3, param: str = "alpha"):
    """Fit ``estimator`` at each value of ``param`` (decreasing), each fit warm-started from
    the previous one. ``param`` is ``"alpha"`` or another strength (e.g. MTRL's ``"beta"``);
    without ``alphas`` the grid is :func:`alpha_grid`'s (for ``"alpha"``) or 10 … 10·eps.

    Returns ``(alphas, coefs, intercepts, n_iters)``: coefs is n_alphas×T×d.
    """
    if alphas is None:
        alphas = (
            alpha_grid(estimator, X, y, task, n_alphas, eps)
            if param == "alpha"
            else np.geomspace(10.0, 10.0 * eps, n_alphas)
        )
    alphas = np.sort(np.asarray(alphas, dtype=float))[::-1]
    est = clone(estimator).set_params(warm_start=True)
    coefs, intercepts, iters = [], [], []
    for a in alphas:
        est.set_params(**{param: float(a)})
        est.fit(X, y, task=task)
        coefs.append(est.coef_.copy())
        intercepts.append(est.intercept_.copy())
        iters.append(est.n_iter_)
    return alphas, np.array(coefs), np.array(intercepts), np.array(iters)



class MultiTaskCV(BaseEstimator):
    """K-fold choice of α along a warm-started path, for any polytask.linear estimator.

    ``fit(X, Y)`` splits rows (``KFold``); ``fit(X, y, task=ids)`` stratifies the folds by
    task so that every task is in every fold. The score is the estimator's ``score``: mean
    over tasks of R² (squared) or accuracy (logistic). Attributes: ``alpha_``, ``alphas_``,
    ``cv_scores_`` (n_alphas × cv), ``best_estimator_`` (refit on all data), ``coef_``,
    ``intercept_``. Use GridSearchCV instead for other parameters (wide form).
    """

    _parameter_constraints: dict = {
        "estimator": [LinearMTLBase],
        "alphas": ["array-like", None],
        "n_alphas": [Interval(Integral, 1, None, closed="left")],
        "eps": [Interval(Real, 0, 1, closed="neither")],
        "cv": [Interval(Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, estimator, *, alphas=None, n_alphas: int = 10, eps: float = 1e-3,
                 cv: int = 3, random_state=0):
        self.estimator = estimator
        self.alphas = alphas
        self.n_alphas = n_alphas
        self.eps = eps
        self.cv = cv
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y, task=None):
        """Score the path on each fold, pick the best α, refit on all data."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float)
        alphas = self.alphas
        if alphas is None:
            alphas = alpha_grid(self.estimator, X, y, task, self.n_alphas, self.eps)
        alphas = np.sort(np.asarray(alphas, dtype=float))[::-1]
        if task is not None:
            ids = np.asarray(task)
            splitter = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
            folds = list(splitter.split(X, ids))
        else:
            splitter = KFold(self.cv, shuffle=True, random_state=self.random_state)
            folds = list(splitter.split(X))
        scores = np.empty((len(alphas), len(folds)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for f, (tr, te) in enumerate(folds):
                est = clone(self.estimator).set_params(warm_start=True)
                for i, a in enumerate(alphas):
                    est.set_params(alpha=float(a))
                    tt = None if task is None else ids[tr]
                    est.fit(X[tr], y[tr], task=tt)
                    scores[i, f] = est.score(X[te], y[te], task=None if task is None else ids[te])
        self.alphas_ = alphas
        self.cv_scores_ = scores
        best = int(np.argmax(scores.mean(axis=1)))
        self.alpha_ = float(alphas[best])
        self.best_estimator_ = clone(self.estimator).set_params(alpha=self.alpha_)
        self.best_estimator_.fit(X, y, task=task)
        self.coef_ = self.best_estimator_.coef_
        self.intercept_ = self.best_estimator_.intercept_
        return self

    def predict(self, X, task=None):
        """Predict with the refitted best estimator."""
        check_is_fitted(self)
        return self.best_estimator_.predict(X, task)

    def score(self, X, y, task=None):
        """Score of the refitted best estimator."""
        check_is_fitted(self)
        return self.best_estimator_.score(X, y, task)
