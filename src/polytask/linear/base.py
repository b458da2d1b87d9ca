"""The shared scikit-learn machinery of polytask's linear multi-task estimators.

Every estimator minimises ``F(W, b) + Ω(W)``: F is the per-task mean loss of
:mod:`polytask.linear._loss` (sklearn's 1/(2n) scaling for the squared loss), Ω the
estimator's regulariser; W is ``coef_`` (T×d), b is ``intercept_`` (T,), never penalised.
A subclass gives Ω as a smooth part (:meth:`_smooth_penalty`) plus a prox-friendly part
(:meth:`_prox`), or overrides :meth:`_solve` when it has variables of its own.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from polytask.errors import LabelRangeError
from polytask.linear._data import (
    TaskData,
    UnknownTaskError,
    build_task_data,
    check_task_vector,
)
from polytask.linear._fista import FistaResult, fista
from polytask.linear._loss import make_loss


def _is_logistic(est) -> bool:
    return est.loss == "logistic"


class LinearMTLBase(RegressorMixin, BaseEstimator):
    """Base class: input forms, intercepts, logistic labels, prediction and the solver loop.

    Fit with ``fit(X, Y)`` (Y n×T, NaN = missing) or ``fit(X, y, task=ids)``; predict with
    ``predict(X)`` (n×T, or a vector after a 1-D fit) or ``predict(X, task=ids)`` (a vector).
    """

    _parameter_constraints: dict = {
        "alpha": [Interval(Real, 0, None, closed="left")],
        "loss": [StrOptions({"squared", "logistic"})],
        "fit_intercept": ["boolean"],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "warm_start": ["boolean"],
    }

    def __init__(
        self,
        alpha: float = 1.0,
        *,
        loss: str = "squared",
        fit_intercept: bool = True,
        tol: float = 1e-4,
        max_iter: int = 1000,
        warm_start: bool = False,
    ):
        self.alpha = alpha
        self.loss = loss
        self.fit_intercept = fit_intercept
        self.tol = tol
        self.max_iter = max_iter
        self.warm_start = warm_start

    # ----------------------------------------------------------------- fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, task=None):
        """Fit on the wide form ``(X, Y)`` or the long form ``(X, y, task=ids)``."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None"
            )
        X = validate_data(self, X, reset=True, dtype=np.float64)
        y = check_array(
            y, ensure_2d=False, dtype=np.float64, ensure_all_finite="allow-nan", input_name="y"
        )
        data, tasks, single = build_task_data(X, y, task)
        if self.loss == "logistic":
            data = self._encode_labels(data, tasks)
        self.tasks_ = tasks
        self._single_output = single
        self._check_extra(data)
        loss = make_loss(self.loss, data, self.fit_intercept)
        warm = (
            self.warm_start
            and hasattr(self, "coef_")
            and self.coef_.shape == (data.n_tasks, data.n_features)
        )
        W0 = self.coef_.copy() if warm else np.zeros((data.n_tasks, data.n_features))
        b0 = None
        if loss.has_intercept_variable:
            b0 = self.intercept_.copy() if warm else self._intercept_start(data)
        result = self._solve(loss, data, W0, b0, warm)
        W = result.x[0]
        self.coef_ = W
        if loss.has_intercept_variable:
            self.intercept_ = result.x[-1]
        elif self.fit_intercept:
            self.intercept_ = loss.intercept(W)
        else:
            self.intercept_ = np.zeros(data.n_tasks)
        self.n_iter_ = result.n_iter
        self.objective_path_ = np.asarray(result.objective)
        self._lipschitz = result.lipschitz
        if not result.converged:
            warnings.warn(
                f"{type(self).__name__} did not converge in max_iter={self.max_iter} "
                f"iterations (tol={self.tol}); increase max_iter or tol, or scale X",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _check_extra(self, data: TaskData) -> None:
        """Hook: validate parameters that depend on the data (e.g. n_clusters ≤ T)."""

    def _encode_labels(self, data: TaskData, tasks: np.ndarray) -> TaskData:
        classes = []
        for t in range(data.n_tasks):
            _, yt = data.task_arrays(t)
            values = np.unique(yt)
            if len(values) != 2:
                raise LabelRangeError(
                    "loss='logistic' needs two classes in every task; "
                    f"task {tasks.tolist()[t]!r} has "
                    f"{len(values)} distinct label(s): {values[:5].tolist()}"
                )
            classes.append(values)
        self.classes_ = np.array(classes)
        return data.map_targets(lambda t, v: np.where(v == self.classes_[t][1], 1.0, -1.0))

    @staticmethod
    def _intercept_start(data: TaskData) -> np.ndarray:
        """The intercept-only logistic optimum: the log-odds of each task's positives."""
        b = np.empty(data.n_tasks)
        for t in range(data.n_tasks):
            _, s = data.task_arrays(t)
            p = np.clip((s > 0).mean(), 1e-6, 1 - 1e-6)
            b[t] = np.log(p / (1 - p))
        return b

    def _start_lipschitz(self, warm: bool) -> float:
        return getattr(self, "_lipschitz", 1.0) if warm else 1.0

    # a subclass gives Ω = smooth part + prox part, or overrides _solve
    def _smooth_penalty(self, W: np.ndarray) -> tuple[float, np.ndarray | None]:
        return 0.0, None

    def _prox(self, V: np.ndarray, step: float) -> tuple[np.ndarray, float]:
        return V, 0.0

    def _solve(self, loss, data: TaskData, W0, b0, warm: bool) -> FistaResult:
        with_b = b0 is not None

        def smooth(xs, need_grad):
            W = xs[0]
            f, gW, gb = loss.value_grad(W, xs[1] if with_b else None, need_grad)
            p, gp = self._smooth_penalty(W)
            if not need_grad:
                return f + p, None
            grads = [gW if gp is None else gW + gp]
            if with_b:
                grads.append(gb)
            return f + p, grads

        def prox(vs, step):
            W, g = self._prox(vs[0], step)
            return ([W, vs[1]] if with_b else [W]), g

        x0 = [W0, b0] if with_b else [W0]
        return fista(
            smooth, prox, x0, tol=self.tol, max_iter=self.max_iter,
            lipschitz=self._start_lipschitz(warm),
        )

    def _gradient_at_zero(self, X, y, task=None) -> np.ndarray:
        """Gradient of the data term at W = 0 (b at its optimum): sets the largest useful α."""
        X = check_array(X, dtype=np.float64)
        y = check_array(y, ensure_2d=False, dtype=np.float64, ensure_all_finite="allow-nan")
        data, tasks, _ = build_task_data(X, y, task)
        if self.loss == "logistic":
            data = self._encode_labels(data, tasks)
        loss = make_loss(self.loss, data, self.fit_intercept)
        W = np.zeros((data.n_tasks, data.n_features))
        b = self._intercept_start(data) if loss.has_intercept_variable else None
        return loss.value_grad(W, b)[1]

    # -------------------------------------------------------------- prediction
    def _task_index(self, task, n: int) -> np.ndarray:
        ids = check_task_vector(task, n)
        lookup = {v: i for i, v in enumerate(self.tasks_.tolist())}
        idx = np.empty(n, dtype=int)
        for i, v in enumerate(ids.tolist()):
            if v not in lookup:
                known = self.tasks_.tolist()
                raise UnknownTaskError(
                    f"task {v!r} (row {i}) was not seen in fit; known tasks: "
                    f"{known[:20]}{' ...' if len(known) > 20 else ''}"
                )
            idx[i] = lookup[v]
        return idx

    def _decision(self, X, task=None) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        if task is None:
            Z = X @ self.coef_.T + self.intercept_
            return Z[:, 0] if self._single_output else Z
        idx = self._task_index(task, X.shape[0])
        return np.einsum("ij,ij->i", X, self.coef_[idx]) + self.intercept_[idx]

    def predict(self, X, task=None) -> np.ndarray:
        """Predictions (squared) or class labels (logistic); n×T, or n with ``task``."""
        Z = self._decision(X, task)
        if self.loss == "squared":
            return Z
        pos = (Z > 0).astype(int)
        if task is not None:
            idx = self._task_index(task, Z.shape[0])
            return self.classes_[idx, pos]
        if Z.ndim == 1:
            return self.classes_[0][pos]
        return np.stack([self.classes_[t][pos[:, t]] for t in range(Z.shape[1])], axis=1)

    @available_if(_is_logistic)
    def decision_function(self, X, task=None) -> np.ndarray:
        """The logit of each task's second class (``classes_[t][1]``)."""
        return self._decision(X, task)

    @available_if(_is_logistic)
    def predict_proba(self, X, task=None) -> np.ndarray:
        """Probability of each task's second class, in the shape of :meth:`predict`."""
        return expit(self._decision(X, task))

    def score(self, X, y, task=None, sample_weight=None) -> float:
        """Mean over tasks of R² (squared) or of accuracy (logistic); NaN targets skipped."""
        from sklearn.metrics import accuracy_score, r2_score

        pred = self.predict(X, task)
        y = np.asarray(y, dtype=float)
        metric = r2_score if self.loss == "squared" else accuracy_score
        if y.ndim == 1 and task is None:
            return float(metric(y, pred, sample_weight=sample_weight))
        if task is not None:
            idx = self._task_index(task, len(y))
            scores = [metric(y[idx == t], pred[idx == t]) for t in np.unique(idx)]
            return float(np.mean(scores))
        scores = []
        for t in range(y.shape[1]):
            rows = ~np.isnan(y[:, t])
            scores.append(metric(y[rows, t], pred[rows, t]))
        return float(np.mean(scores))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
