"""Quality indicators of a front of loss vectors (all objectives minimised).

- :func:`non_dominated`: the mask of points no other point dominates;
- :func:`hypervolume`: the volume dominated by the front and bounded by a reference
  point, exact: a sweep for two objectives (O(n log n)), slices along the third axis
  for three (O(n² log n)), and recursive slicing (HSO, While et al., IEEE TEC 2006)
  beyond; ``backend="pymoo"`` uses pymoo's implementation instead (optional extra
  ``polytask[pareto]``), always on the non-dominated set, since one C implementation
  on PyPI returns a wrong value when given dominated points;
- :func:`reference_point`: the explicit reference-point policies;
- :func:`igd` and :func:`igd_plus`: distance of a front to a reference front
  (Coello & Reyes Sierra 2004; Ishibuchi et al., EMO 2015);
- :func:`preference_fidelity`: the angle between each preference's target direction
  and the loss vector the method reached for it.

Points are an (n, m) array-like; every function returns plain floats or numpy arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import PolytaskError
from .preferences import check_rays, loss_direction


class ReferencePointError(PolytaskError, ValueError):
    """A hypervolume reference point is invalid for the front it is used with."""


def as_points(points: object, what: str = "front") -> np.ndarray:
    """An (n, m) float64 array of finite points; a clear error otherwise."""
    a = np.asarray(points, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] < 1:
        raise PolytaskError(f"{what} must be an (n, m) array of loss vectors, got {a.shape}")
    if not np.isfinite(a).all():
        raise PolytaskError(f"{what} has non-finite values: {a[~np.isfinite(a).all(1)].tolist()}")
    return a


def non_dominated(points: object) -> np.ndarray:
    """Boolean mask of the points no other point dominates (≤ everywhere, < somewhere).

    Duplicates are all kept (none dominates the other)."""
    a = as_points(points)
    n = len(a)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        le = (a <= a[i]).all(axis=1)
        lt = (a < a[i]).any(axis=1)
        if (le & lt).any():
            keep[i] = False
    return keep


def pareto_front(points: object) -> np.ndarray:
    """The non-dominated points, duplicates removed, sorted by the first objective."""
    a = as_points(points)
    front = np.unique(a[non_dominated(a)], axis=0)
    return front[np.lexsort(front.T[::-1])]


REFERENCE_POLICIES = ("given", "nadir", "worst")


def reference_point(
    points: object, policy: str = "nadir", offset: float = 0.1, ref: Sequence[float] | None = None
) -> np.ndarray:
    """A reference point by an explicit policy.

    - ``"given"``: ``ref`` itself (checked to have the front's dimension);
    - ``"nadir"``: the worst value of each objective over the non-dominated points,
      plus ``offset`` times its range (plus ``offset`` where the range is 0);
    - ``"worst"``: the same over every point.

    Hypervolumes are only comparable under one reference point: fix it once per
    benchmark (the COSMOS line of work uses (2, 2) for the MultiMNIST cross-entropies).
    """
    a = as_points(points)
    if policy == "given":
        if ref is None:
            raise ReferencePointError("policy 'given' needs ref=...")
        r = np.asarray(ref, dtype=np.float64).reshape(-1)
        if len(r) != a.shape[1]:
            raise ReferencePointError(
                f"reference point {r.tolist()} has {len(r)} values for {a.shape[1]} objectives"
            )
        return r
    if policy not in REFERENCE_POLICIES:
        raise ReferencePointError(f"unknown reference policy {policy!r}; {REFERENCE_POLICIES}")
    base = a[non_dominated(a)] if policy == "nadir" else a
    hi, lo = base.max(axis=0), base.min(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return hi + offset * span


def _check_ref(a: np.ndarray, ref: Sequence[float], strict: bool) -> np.ndarray:
    r = np.asarray(ref, dtype=np.float64).reshape(-1)
    if len(r) != a.shape[1]:
        raise ReferencePointError(
            f"reference point {r.tolist()} has {len(r)} values for {a.shape[1]} objectives"
        )
    if not np.isfinite(r).all():
        raise ReferencePointError(f"reference point {r.tolist()} is not finite")
    inside = (a < r).all(axis=1)
    if strict and not inside.any():
        raise ReferencePointError(
            f"reference point {r.tolist()} is dominated by (or equal to) no point of the "
            f"front: every point has some loss >= it (front min {a.min(axis=0).tolist()}); "
            "the hypervolume would be 0. Raise the reference point or pass strict=False."
        )
    return r


def _hv2(a: np.ndarray, r: np.ndarray) -> float:
    a = a[np.argsort(a[:, 0], kind="stable")]
    total, best_y = 0.0, r[1]
    for x, y in a:
        if y < best_y:
            total += (r[0] - x) * (best_y - y)
            best_y = y
    return total


def _hv3(a: np.ndarray, r: np.ndarray) -> float:
    a = a[np.argsort(a[:, 2], kind="stable")]
    total = 0.0
    for i in range(len(a)):
        z_next = a[i + 1, 2] if i + 1 < len(a) else r[2]
        depth = z_next - a[i, 2]
        if depth > 0:
            total += depth * _hv2(a[: i + 1, :2], r[:2])
    return total


def _hv_slices(a: np.ndarray, r: np.ndarray) -> float:
    m = a.shape[1]
    if m == 1:
        return float(r[0] - a[:, 0].min())
    if m == 2:
        return _hv2(a, r)
    if m == 3:
        return _hv3(a, r)
    a = a[np.argsort(a[:, -1], kind="stable")]
    total = 0.0
    for i in range(len(a)):
        z_next = a[i + 1, -1] if i + 1 < len(a) else r[-1]
        depth = z_next - a[i, -1]
        if depth > 0:
            prefix = a[: i + 1, :-1]
            total += depth * _hv_slices(prefix[non_dominated(prefix)], r[:-1])
    return total


HV_BACKENDS = ("exact", "pymoo")


def hypervolume(
    points: object,
    ref: Sequence[float],
    *,
    backend: str = "exact",
    strict: bool = True,
) -> float:
    """The hypervolume of ``points`` (minimised losses) with reference point ``ref``.

    Points not strictly below ``ref`` in every objective add nothing and are dropped;
    dominated points are dropped before computing. ``strict=True`` raises
    :class:`ReferencePointError` when no point is below ``ref`` (a reference point the
    whole front fails to dominate: almost always a wrong reference point), and for a
    reference point of the wrong dimension always.
    """
    a = as_points(points)
    r = _check_ref(a, ref, strict)
    a = a[(a < r).all(axis=1)]
    if len(a) == 0:
        return 0.0
    a = np.unique(a[non_dominated(a)], axis=0)
    if backend == "exact":
        return float(_hv_slices(a, r))
    if backend == "pymoo":
        try:
            from pymoo.indicators.hv import HV
        except ImportError as error:  # pragma: no cover - depends on the extra
            raise PolytaskError(
                "backend='pymoo' needs pymoo: pip install 'polytask[pareto]'"
            ) from error
        return float(HV(ref_point=r)(a))
    raise PolytaskError(f"unknown hypervolume backend {backend!r}; available: {HV_BACKENDS}")


def igd(points: object, reference_front: object) -> float:
    """Inverted generational distance: the mean, over the reference front, of the
    Euclidean distance to the nearest point of ``points`` (lower is better)."""
    a, z = as_points(points), as_points(reference_front, "reference front")
    _same_dim(a, z)
    d = np.linalg.norm(z[:, None, :] - a[None, :, :], axis=2)
    return float(d.min(axis=1).mean())


def igd_plus(points: object, reference_front: object) -> float:
    """IGD+ (Ishibuchi, Masuda, Tanigaki & Nojima, EMO 2015): as IGD, with the distance
    ``‖max(a − z, 0)‖`` that only counts where ``a`` is worse than ``z`` (weakly
    Pareto compliant)."""
    a, z = as_points(points), as_points(reference_front, "reference front")
    _same_dim(a, z)
    d = np.linalg.norm(np.maximum(a[None, :, :] - z[:, None, :], 0.0), axis=2)
    return float(d.min(axis=1).mean())


def _same_dim(a: np.ndarray, z: np.ndarray) -> None:
    if a.shape[1] != z.shape[1]:
        raise PolytaskError(
            f"the front has {a.shape[1]} objectives but the reference front {z.shape[1]}"
        )


def preference_fidelity(prefs: object, losses: object) -> np.ndarray:
    """For each preference, the angle (radians) between its target direction in loss
    space (:func:`~polytask.pareto.preferences.loss_direction`: ``p_k L_k`` equal for
    every task) and the loss vector reached for it; 0 means the solution lies exactly on
    its ray. Preferences with two or more zeros have no direction and give NaN."""
    a = as_points(losses, "losses")
    p = check_rays(np.asarray(prefs, dtype=np.float64), a.shape[1])
    if len(p) != len(a):
        raise PolytaskError(f"{len(p)} preferences for {len(a)} loss vectors")
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if int((p[i] > 0).sum()) < len(p[i]) - 1:
            continue
        d = loss_direction(p[i]).numpy()
        norm = np.linalg.norm(a[i])
        if norm == 0:
            out[i] = 0.0
            continue
        out[i] = float(np.arccos(np.clip(d @ a[i] / norm, -1.0, 1.0)))
    return out
