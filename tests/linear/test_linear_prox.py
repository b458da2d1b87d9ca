"""Proximal operators against their definitions (a brute-force minimisation)."""

import numpy as np
import pytest
from scipy.optimize import minimize

from polytask.linear import _prox


def _brute_prox(V, thr, g):
    obj = lambda z: thr * g(z.reshape(V.shape)) + 0.5 * np.sum((z - V.ravel()) ** 2)  # noqa: E731
    best = min(
        (minimize(obj, V.ravel() + 0.01 * k, method="Powell", options={"xtol": 1e-10, "ftol": 1e-14,
                                                                      "maxiter": 40000})
         for k in range(2)),
        key=lambda r: r.fun,
    )
    return best.x.reshape(V.shape), best.fun


@pytest.mark.parametrize(
    "name, g",
    [
        ("l1", _prox.l1_norm),
        ("group2", lambda W: _prox.group_norm(W, 2)),
        ("groupinf", lambda W: _prox.group_norm(W, "inf")),
        ("trace", lambda W: np.linalg.svd(W, compute_uv=False).sum()),
        ("sqtrace", lambda W: 0.5 * np.linalg.svd(W, compute_uv=False).sum() ** 2),
    ],
)
def test_prox_minimises_its_objective(name, g):
    rng = np.random.default_rng(1)
    V = rng.standard_normal((3, 2))
    thr = 0.6
    fn = {"l1": _prox.prox_l1, "group2": lambda v, t: _prox.prox_group(v, t, 2),
          "groupinf": lambda v, t: _prox.prox_group(v, t, "inf"), "trace": _prox.prox_trace,
          "sqtrace": _prox.prox_squared_trace}[name]
    Z, gz = fn(V, thr)
    assert gz == pytest.approx(g(Z), abs=1e-12)
    ours = thr * g(Z) + 0.5 * np.sum((Z - V) ** 2)
    _, brute = _brute_prox(V, thr, g)
    assert ours <= brute + 1e-7


def test_l1_ball_projection_is_on_the_ball_and_optimal():
    rng = np.random.default_rng(2)
    V = rng.standard_normal((6, 5)) * 3
    P = _prox.project_l1_ball_columns(V, 1.5)
    assert np.allclose(np.abs(P).sum(axis=0), 1.5)
    # optimality: V − P is a normal of the ball at P: its ℓ∞ value is attained on P's support
    for j in range(V.shape[1]):
        r = V[:, j] - P[:, j]
        on = P[:, j] != 0
        assert np.allclose(np.abs(r[on]), np.abs(r).max())
    small = 0.01 * V
    assert np.allclose(_prox.project_l1_ball_columns(small, 100.0), small)


def test_cmtl_projection_lands_in_the_set_and_is_the_nearest_point():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 5))
    M = A + A.T
    P, lam, _ = _prox.project_cmtl_set(M, 2)
    eig = np.linalg.eigvalsh(P)
    assert eig.min() >= -1e-10 and eig.max() <= 1 + 1e-10
    assert np.trace(P) == pytest.approx(2.0, abs=1e-9)
    # any other point of the set is farther (random feasible points)
    for _ in range(20):
        Q, _, _ = _prox.project_cmtl_set(rng.standard_normal((5, 5)) * 3, 2)
        assert np.linalg.norm(M - P) <= np.linalg.norm(M - Q) + 1e-9
