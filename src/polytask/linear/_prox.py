"""Closed-form proximal operators and projections on coefficient matrices W (T×d).

A "group" is one feature across all tasks: a column of W (a row in the d×T convention
of the papers). Each ``prox_*`` returns the minimiser of ``thr·g(Z) + ½||Z − V||²`` and
``g`` at that point.
"""

from __future__ import annotations

import numpy as np


def l1_norm(W: np.ndarray) -> float:
    """Σ |W_tj|."""
    return float(np.abs(W).sum())


def group_norm(W: np.ndarray, q) -> float:
    """ℓ1/ℓq norm: Σ_j ||W[:, j]||_q, q = 2 or ``"inf"``."""
    if q == 2:
        return float(np.sqrt((W * W).sum(axis=0)).sum())
    return float(np.abs(W).max(axis=0).sum()) if W.size else 0.0


def dual_group_norm(G: np.ndarray, q) -> float:
    """The dual of :func:`group_norm`: max_j ||G[:, j]||_{q*} (q* = 2 or 1)."""
    if q == 2:
        return float(np.sqrt((G * G).sum(axis=0)).max())
    return float(np.abs(G).sum(axis=0).max())


def prox_l1(V: np.ndarray, thr: float) -> tuple[np.ndarray, float]:
    """Elementwise soft-thresholding."""
    Z = np.sign(V) * np.maximum(np.abs(V) - thr, 0.0)
    return Z, l1_norm(Z)


def prox_group_l2(V: np.ndarray, thr: float) -> tuple[np.ndarray, float]:
    """Group soft-thresholding of each column: scale by max(0, 1 − thr/||v||)."""
    norms = np.sqrt((V * V).sum(axis=0))
    scale = np.maximum(0.0, 1.0 - thr / np.maximum(norms, 1e-300))
    Z = V * scale
    return Z, float((norms * scale).sum())


def project_l1_ball_columns(V: np.ndarray, radius: float) -> np.ndarray:
    """Euclidean projection of each column of V onto {||v||_1 ≤ radius} (Duchi et al., 2008)."""
    A = np.abs(V)
    inside = A.sum(axis=0) <= radius
    if inside.all():
        return V.copy()
    U = -np.sort(-A, axis=0)
    css = np.cumsum(U, axis=0) - radius
    k = np.arange(1, V.shape[0] + 1)[:, None]
    cond = U - css / k > 0
    rho = V.shape[0] - 1 - np.argmax(cond[::-1], axis=0)  # last index where cond holds
    theta = css[rho, np.arange(V.shape[1])] / (rho + 1)
    theta = np.where(inside, 0.0, np.maximum(theta, 0.0))
    return np.sign(V) * np.maximum(A - theta, 0.0)


def prox_group_linf(V: np.ndarray, thr: float) -> tuple[np.ndarray, float]:
    """Prox of thr·Σ_j ||v_j||_∞ by Moreau: v − proj_{thr·B₁}(v), column by column."""
    Z = V - project_l1_ball_columns(V, thr)
    return Z, group_norm(Z, "inf")


def prox_group(V: np.ndarray, thr: float, q) -> tuple[np.ndarray, float]:
    """Prox of the ℓ1/ℓq norm, q = 2 or ``"inf"``."""
    return prox_group_l2(V, thr) if q == 2 else prox_group_linf(V, thr)


def prox_trace(V: np.ndarray, thr: float) -> tuple[np.ndarray, float]:
    """Singular-value soft-thresholding: the prox of thr·||V||_*."""
    U, s, Vt = np.linalg.svd(V, full_matrices=False)
    s = np.maximum(s - thr, 0.0)
    keep = s > 0
    Z = (U[:, keep] * s[keep]) @ Vt[keep]
    return Z, float(s.sum())


def project_capped_simplex(lam: np.ndarray, k: float, iters: int = 100) -> np.ndarray:
    """Projection of ``lam`` onto {0 ≤ x ≤ 1, Σ x = k} (bisection on the shift θ)."""
    lo, hi = lam.min() - 1.0, lam.max()
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if np.clip(lam - mid, 0.0, 1.0).sum() > k:
            lo = mid
        else:
            hi = mid
    return np.clip(lam - 0.5 * (lo + hi), 0.0, 1.0)


def project_cmtl_set(M: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projection of a symmetric M onto {0 ⪯ M ⪯ I, tr M = k}: eigen-decompose and project
    the eigenvalues onto the capped simplex. Returns M and its eigen-pairs."""
    lam, P = np.linalg.eigh(0.5 * (M + M.T))
    lam = project_capped_simplex(lam, k)
    return (P * lam) @ P.T, lam, P


def prox_squared_l1_nonneg(s: np.ndarray, lam: float) -> np.ndarray:
    """argmin_{x ≥ 0} ½||x − s||² + (λ/2)(Σx)² for s ≥ 0: shift the top-k entries by λ·Σx."""
    order = np.argsort(-s)
    srt = s[order]
    csum = np.cumsum(srt)
    k = np.arange(1, len(s) + 1)
    total = csum / (1.0 + lam * k)
    active = srt - lam * total > 0
    if not active.any():
        return np.zeros_like(s)
    kk = int(np.flatnonzero(active)[-1])
    x = np.zeros_like(s)
    x[order] = np.maximum(srt - lam * total[kk], 0.0)
    return x


def prox_squared_trace(V: np.ndarray, thr: float) -> tuple[np.ndarray, float]:
    """Prox of (thr/2)·||V||_*²: the squared-ℓ1 prox on the singular values."""
    U, s, Vt = np.linalg.svd(V, full_matrices=False)
    s = prox_squared_l1_nonneg(s, thr)
    keep = s > 0
    Z = (U[:, keep] * s[keep]) @ Vt[keep]
    return Z, 0.5 * float(s.sum()) ** 2
