"""Input handling for the linear estimators: the wide form ``(X, Y)`` and the long form
``(X, y, task)`` become one internal problem with T tasks.

Wide form: ``Y`` is n×T (or a vector: one task), NaN marks a missing target. Long form:
``y`` is a vector and ``task`` gives each row's task id; every task has its own samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polytask.errors import PolytaskError, ShapeMismatchError


class MissingTargetError(PolytaskError, ValueError):
    """A task (a column of ``Y``, or a task id) has no usable label."""


class UnknownTaskError(PolytaskError, ValueError):
    """``predict`` was asked for a task id that ``fit`` never saw."""


@dataclass
class TaskData:
    """The training data of T tasks, as the estimators see it.

    ``form`` is ``"shared"`` (one X, every target observed), ``"masked"`` (one X, ``mask``
    says which targets are observed) or ``"long"`` (``Xs[t]``, ``ys[t]`` per task).
    In the shared and masked forms ``Y`` is n×T with zeros where ``mask`` is False.
    """

    form: str
    n_tasks: int
    n_features: int
    X: np.ndarray | None = None
    Y: np.ndarray | None = None
    mask: np.ndarray | None = None
    Xs: list[np.ndarray] | None = None
    ys: list[np.ndarray] | None = None

    @property
    def n_per_task(self) -> np.ndarray:
        """Number of observed samples of each task."""
        if self.form == "long":
            return np.array([len(y) for y in self.ys], dtype=float)
        if self.form == "masked":
            return self.mask.sum(axis=0).astype(float)
        return np.full(self.n_tasks, float(self.X.shape[0]))

    def task_arrays(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """The samples and targets of task ``t`` (a copy in the masked form)."""
        if self.form == "long":
            return self.Xs[t], self.ys[t]
        if self.form == "masked":
            rows = self.mask[:, t]
            return self.X[rows], self.Y[rows, t]
        return self.X, self.Y[:, t]

    def map_targets(self, fn) -> TaskData:
        """A copy whose observed targets of task t are ``fn(t, y_t)``."""
        if self.form == "long":
            ys = [np.asarray(fn(t, y), dtype=float) for t, y in enumerate(self.ys)]
            return TaskData("long", self.n_tasks, self.n_features, Xs=self.Xs, ys=ys)
        Y = np.zeros_like(self.Y)
        for t in range(self.n_tasks):
            rows = self.mask[:, t] if self.mask is not None else slice(None)
            Y[rows, t] = fn(t, self.Y[rows, t])
        return TaskData(self.form, self.n_tasks, self.n_features, X=self.X, Y=Y, mask=self.mask)


def check_task_vector(task, n: int, what: str = "task") -> np.ndarray:
    """``task`` as a 1-D array of length ``n`` (a scalar is repeated)."""
    arr = np.asarray(task)
    if arr.ndim == 0:
        return np.repeat(arr, n)
    if arr.ndim != 1:
        raise ShapeMismatchError(f"{what} must be a 1-D array of task ids, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ShapeMismatchError(
            f"X has {n} rows but {what} has {arr.shape[0]} entries; they must match"
        )
    return arr


def build_task_data(X: np.ndarray, y: np.ndarray, task=None) -> tuple[TaskData, np.ndarray, bool]:
    """Turn validated ``X`` (n×d, finite) and ``y`` into :class:`TaskData`.

    Returns the data, the task ids (``tasks_``) and whether the targets were 1-D with no
    ``task`` (a single-task fit, whose ``predict`` returns a vector).
    """
    n, d = X.shape
    y = np.asarray(y, dtype=float)
    if y.shape[0] != n:
        raise ShapeMismatchError(f"X has {n} rows but y has {y.shape[0]}; they must match")
    if task is not None:
        if y.ndim != 1:
            raise ShapeMismatchError(
                f"the long form fit(X, y, task=...) needs a 1-D y, got shape {y.shape}"
            )
        ids = check_task_vector(task, n)
        if np.isnan(y).any():
            raise MissingTargetError(
                "y has NaN in the long form; leave the row out instead "
                f"(first NaN at row {int(np.flatnonzero(np.isnan(y))[0])})"
            )
        tasks, inv = np.unique(ids, return_inverse=True)
        rows = [np.flatnonzero(inv == t) for t in range(len(tasks))]
        data = TaskData(
            "long", len(tasks), d, Xs=[X[r] for r in rows], ys=[y[r] for r in rows]
        )
        return data, tasks, False
    single = y.ndim == 1
    Y = y[:, None] if single else y
    if Y.ndim != 2:
        raise ShapeMismatchError(f"Y must be n×T (or a vector), got shape {y.shape}")
    if np.isinf(Y).any():
        raise ShapeMismatchError("Y has an infinite value; NaN marks a missing target")
    observed = ~np.isnan(Y)
    empty = np.flatnonzero(~observed.any(axis=0))
    if empty.size:
        raise MissingTargetError(
            f"column {int(empty[0])} of Y has no label (every entry is NaN); "
            "drop that task or give it at least one target"
        )
    T = Y.shape[1]
    if observed.all():
        data = TaskData("shared", T, d, X=X, Y=Y.copy())
    else:
        data = TaskData("masked", T, d, X=X, Y=np.where(observed, Y, 0.0), mask=observed)
    return data, np.arange(T), single
