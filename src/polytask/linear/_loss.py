"""The data-fit term of every linear estimator: the sum over tasks of each task's mean loss.

``F(W, b) = Σ_t (1/n_t) Σ_{i in task t} ℓ(y_ti, x_ti·w_t + b_t)`` with
``ℓ = ½(y − z)²`` (``"squared"``) or ``log(1 + exp(−s z))``, s = ±1 (``"logistic"``).
With one shared X and every target observed, the squared case is sklearn's
``(1/2n) ||Y − X Wᵀ||²_F``. ``W`` is T×d (sklearn's ``coef_``), ``b`` has T entries.

For the squared loss the intercept is eliminated exactly by centring each task's X and y
(the penalties never touch ``b``), and the problem is held as per-task Gram matrices when
that is cheaper than products with X; for the logistic loss ``b`` is a variable.
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

from polytask.linear._data import TaskData

# Hold per-task Gram matrices (T·d² floats) up to this many floats (~200 MB).
_GRAM_BUDGET = 25_000_000


class SquaredLoss:
    """Σ_t (1/2n_t) ||y_t − X_t w_t − b_t||², intercept eliminated by centring."""

    has_intercept_variable = False

    def __init__(self, data: TaskData, fit_intercept: bool):
        T, d = data.n_tasks, data.n_features
        self.T, self.d = T, d
        n_t = data.n_per_task
        self.inv_n = 1.0 / n_t
        self.x_mean = np.zeros((T, d))
        self.y_mean = np.zeros(T)
        if fit_intercept and data.form == "shared":
            self.x_mean[:] = data.X.mean(axis=0)
            self.y_mean[:] = data.Y.mean(axis=0)
        elif fit_intercept:
            for t in range(T):
                Xt, yt = data.task_arrays(t)
                self.x_mean[t] = Xt.mean(axis=0)
                self.y_mean[t] = yt.mean()
        shared_gram = data.form == "shared"
        gram_floats = d * d if shared_gram else T * d * d
        n_avg = float(n_t.mean())
        self.use_gram = gram_floats <= _GRAM_BUDGET and n_avg >= 0.5 * d
        self.form = data.form
        if self.use_gram:
            self._init_gram(data, shared_gram)
        else:
            self._init_direct(data)

    def _init_gram(self, data: TaskData, shared: bool) -> None:
        T, d = self.T, self.d
        self.c = np.empty((T, d))
        self.yy = np.empty(T)
        if shared:
            Xc = data.X - self.x_mean[0]
            Yc = data.Y - self.y_mean
            n = data.X.shape[0]
            self.G = (Xc.T @ Xc) / n
            self.c = (Yc.T @ Xc) / n
            self.yy = 0.5 * (Yc * Yc).sum(axis=0) / n
            self.shared_gram = True
            return
        self.G = np.empty((T, d, d))
        for t in range(T):
            Xt, yt = data.task_arrays(t)
            Xc = Xt - self.x_mean[t]
            yc = yt - self.y_mean[t]
            self.G[t] = (Xc.T @ Xc) * self.inv_n[t]
            self.c[t] = (Xc.T @ yc) * self.inv_n[t]
            self.yy[t] = 0.5 * (yc @ yc) * self.inv_n[t]
        self.shared_gram = False

    def _init_direct(self, data: TaskData) -> None:
        if data.form == "long":
            self.Xs = [Xt - self.x_mean[t] for t, Xt in enumerate(data.Xs)]
            self.ys = [yt - self.y_mean[t] for t, yt in enumerate(data.ys)]
            return
        self.X = data.X
        self.mask = data.mask
        Yc = data.Y - self.y_mean
        self.Yc = Yc if data.mask is None else np.where(data.mask, Yc, 0.0)

    def value_grad(self, W: np.ndarray, b=None, need_grad: bool = True):
        """Loss value and its gradient with respect to W (T×d)."""
        if self.use_gram:
            GW = W @ self.G if self.shared_gram else np.einsum("tij,tj->ti", self.G, W)
            val = float(0.5 * np.sum(W * GW) - np.sum(self.c * W) + self.yy.sum())
            return val, (GW - self.c if need_grad else None), None
        if self.form == "long":
            val, grad = 0.0, np.empty_like(W) if need_grad else None
            for t, (Xt, yt) in enumerate(zip(self.Xs, self.ys)):
                r = Xt @ W[t] - yt
                val += 0.5 * (r @ r) * self.inv_n[t]
                if need_grad:
                    grad[t] = (Xt.T @ r) * self.inv_n[t]
            return float(val), grad, None
        # one X: centring per task is x_i·w_t − x̄_t·w_t; residuals of a task sum to zero.
        R = self.X @ W.T - np.sum(self.x_mean * W, axis=1) - self.Yc
        if self.mask is not None:
            R = R * self.mask
        R = R * self.inv_n
        val = float(0.5 * np.sum(R * R / self.inv_n))
        return val, ((R.T @ self.X) if need_grad else None), None

    def intercept(self, W: np.ndarray) -> np.ndarray:
        """The optimal intercepts for W: ȳ_t − x̄_t·w_t."""
        return self.y_mean - np.sum(self.x_mean * W, axis=1)


class LogisticLoss:
    """Σ_t (1/n_t) Σ_i log(1 + exp(−s_ti (x_ti·w_t + b_t))), targets s = ±1."""

    def __init__(self, data: TaskData, fit_intercept: bool):
        self.T, self.d = data.n_tasks, data.n_features
        self.inv_n = 1.0 / data.n_per_task
        self.has_intercept_variable = fit_intercept
        self.form = data.form
        if data.form == "long":
            self.Xs, self.ss = data.Xs, data.ys
        else:
            self.X = data.X
            # weight 1/n_t where observed, 0 where missing
            self.S = data.Y
            self.Wt = np.broadcast_to(self.inv_n, data.Y.shape)
            if data.mask is not None:
                self.Wt = data.mask * self.inv_n

    def value_grad(self, W: np.ndarray, b=None, need_grad: bool = True):
        """Loss value and gradients with respect to W (T×d) and b (T,)."""
        b0 = np.zeros(self.T) if b is None else b
        if self.form == "long":
            val = 0.0
            gW = np.empty_like(W) if need_grad else None
            gb = np.empty(self.T) if need_grad else None
            for t, (Xt, st) in enumerate(zip(self.Xs, self.ss)):
                m = -st * (Xt @ W[t] + b0[t])
                val += np.logaddexp(0.0, m).sum() * self.inv_n[t]
                if need_grad:
                    r = -st * expit(m) * self.inv_n[t]
                    gW[t] = Xt.T @ r
                    gb[t] = r.sum()
        else:
            M = -self.S * (self.X @ W.T + b0)
            val = float(np.sum(np.logaddexp(0.0, M) * self.Wt))
            gW = gb = None
            if need_grad:
                R = -self.S * expit(M) * self.Wt
                gW = R.T @ self.X
                gb = R.sum(axis=0)
        if b is None:
            gb = None
        return float(val), gW, gb

    def intercept(self, W: np.ndarray) -> np.ndarray:  # pragma: no cover - b is a variable
        raise NotImplementedError


def make_loss(loss: str, data: TaskData, fit_intercept: bool):
    """The data-fit term named ``loss`` over ``data``."""
    if loss == "squared":
        return SquaredLoss(data, fit_intercept)
    return LogisticLoss(data, fit_intercept)
