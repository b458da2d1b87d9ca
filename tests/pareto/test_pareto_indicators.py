"""Exact hypervolume against brute force; IGD/IGD+; reference-point checks; fidelity."""

import itertools

import numpy as np
import pytest

from polytask.pareto import (
    ReferencePointError,
    hypervolume,
    igd,
    igd_plus,
    non_dominated,
    pareto_front,
    preference_fidelity,
    reference_point,
)


def brute_force_hv(points, ref):
    """Sum the grid cells (from every coordinate) whose lower corner some point dominates."""
    pts = np.asarray(points, float)
    ref = np.asarray(ref, float)
    pts = pts[(pts < ref).all(1)]
    if len(pts) == 0:
        return 0.0
    axes = [np.unique(np.concatenate([pts[:, d], [ref[d]]])) for d in range(pts.shape[1])]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        lo = np.array([axes[d][i] for d, i in enumerate(cell)])
        hi = np.array([axes[d][i + 1] for d, i in enumerate(cell)])
        if (pts <= lo).all(1).any():
            total += float(np.prod(hi - lo))
    return total


@pytest.mark.parametrize("m,n", [(2, 1), (2, 9), (3, 2), (3, 8), (4, 6)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hypervolume_matches_brute_force(m, n, seed):
    rng = np.random.default_rng(seed)
    pts = rng.random((n, m))
    pts = np.vstack([pts, pts[:1]])  # a duplicate
    pts = np.vstack([pts, pts[:1] + 0.05])  # a dominated point
    ref = np.full(m, 1.1)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref), rel=1e-12, abs=1e-14)


def test_hypervolume_on_integer_ties_and_points_beyond_ref():
    pts = [[1, 3], [2, 2], [3, 1], [2, 3], [5, 0.5], [0.5, 5]]  # last two beyond ref in one axis
    ref = [4, 4]
    # staircase: (4-1)(4-3) + (4-2)(3-2) + (4-3)(2-1) = 3 + 2 + 1
    assert hypervolume(pts, ref) == pytest.approx(6.0)
    assert hypervolume(pts, ref) == pytest.approx(brute_force_hv(pts, ref))


def test_hypervolume_three_objectives_by_hand():
    # two boxes of volume 1 and 1 overlapping in 0.5*1*1 ... computed by inclusion-exclusion
    pts = [[0, 0, 1], [0, 1, 0]]
    ref = [1, 2, 2]
    # box1 = 1*2*1 = 2, box2 = 1*1*2 = 2, intersection = 1*1*1 = 1
    assert hypervolume(pts, ref) == pytest.approx(3.0)


def test_reference_point_errors_name_the_value():
    with pytest.raises(ReferencePointError, match="3 values for 2 objectives"):
        hypervolume([[1, 1]], [2, 2, 2])
    with pytest.raises(ReferencePointError, match=r"\[0.5, 0.5\]"):
        hypervolume([[1, 1], [0.7, 2]], [0.5, 0.5])
    assert hypervolume([[1, 1]], [0.5, 0.5], strict=False) == 0.0
    with pytest.raises(ReferencePointError, match="unknown reference policy"):
        reference_point([[1, 1]], policy="max")


def test_reference_point_policies():
    pts = np.array([[1.0, 3.0], [3.0, 1.0], [4.0, 4.0]])
    assert reference_point(pts, "nadir", offset=0.0).tolist() == [3.0, 3.0]
    assert reference_point(pts, "worst", offset=0.0).tolist() == [4.0, 4.0]
    assert reference_point(pts, "nadir", offset=0.5).tolist() == [4.0, 4.0]
    assert reference_point(pts, "given", ref=[5, 5]).tolist() == [5.0, 5.0]


def test_non_dominated_and_front():
    pts = [[1, 2], [2, 1], [2, 2], [1, 2], [3, 0.5]]
    assert non_dominated(pts).tolist() == [True, True, False, True, True]
    assert pareto_front(pts).tolist() == [[1, 2], [2, 1], [3, 0.5]]


def test_hypervolume_pymoo_backend_agrees():
    pytest.importorskip("pymoo")
    rng = np.random.default_rng(3)
    for m in (2, 3):
        pts = rng.random((12, m))
        ref = np.full(m, 1.2)
        assert hypervolume(pts, ref, backend="pymoo") == pytest.approx(hypervolume(pts, ref))


def test_igd_and_igd_plus_by_hand():
    ref_front = [[0, 1], [1, 0]]
    front = [[0, 2]]
    # IGD: distances 1 and sqrt(1 + 4); IGD+: max(a - z, 0): (0, 1) -> 1, (0, 2) -> 2
    assert igd(front, ref_front) == pytest.approx((1 + np.sqrt(5)) / 2)
    assert igd_plus(front, ref_front) == pytest.approx((1 + 2) / 2)
    # IGD+ counts nothing where the front is better than the reference front
    assert igd_plus([[0, 0]], ref_front) == 0.0
    assert igd(ref_front, ref_front) == 0.0


def test_preference_fidelity_is_zero_on_the_ray():
    prefs = np.array([[0.25, 0.75], [0.5, 0.5]])
    # p_k L_k equal: L ∝ 1/p
    losses = np.array([[3.0, 1.0], [0.4, 0.4]])
    np.testing.assert_allclose(preference_fidelity(prefs, losses), 0.0, atol=1e-7)
    off = preference_fidelity([[0.5, 0.5]], [[1.0, 0.0]])
    assert off[0] == pytest.approx(np.pi / 4)
