"""Every aggregation method on degenerate Jacobians: no NaN, and the documented result."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import polytask.balancing as B
from polytask.balancing import GradientAggregator
from polytask.balancing.aggregation import SolverWarning

METHODS = sorted(
    n for n in B.available()
    if isinstance(B.method_class(n), type) and issubclass(B.method_class(n), GradientAggregator)
    and not B.method_class(n).requires  # pmtl, epo: tested in tests/pareto
)
# methods documented to give the zero update on exactly opposite gradients (random
# draws, and MoCo's tracking from zero, do not cancel them)
ZERO_ON_OPPOSITE = [m for m in METHODS if not B.method_class(m).random and m != "moco"]
# positively homogeneous rules: d(sJ) = s d(J); scale-invariant ones: d(sJ) = d(J)
HOMOGENEOUS = [m for m in METHODS if B.method_class(m).scaling == "homogeneous"]
INVARIANT = [m for m in METHODS if B.method_class(m).scaling == "invariant"]


def build(name: str):
    options = {"path": "jacobian"}
    if B.method_class(name).random:
        options["seed"] = 0
    return B.get(name, **options)


def jacobian(kind: str, k: int, p: int, scale: float, dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(k, p, generator=gen, dtype=torch.float64)
    if kind == "zero":
        base.zero_()
    elif kind == "identical":
        base[:] = base[0]
    elif kind == "opposite":
        base[1] = -base[0]
    elif kind == "zero_row":
        base[0] = 0
    elif kind == "rank1":
        base = torch.randn(k, 1, generator=gen, dtype=torch.float64) * base[:1]
    elif kind == "duplicate":
        base[1] = base[0]
    return (base * scale).to(dtype)


KINDS = ["random", "zero", "identical", "opposite", "zero_row", "rank1", "duplicate"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(METHODS),
    kind=st.sampled_from(KINDS),
    k=st.integers(2, 6),
    p=st.integers(1, 8),
    exponent=st.sampled_from([-30, -12, -4, 0, 4, 12, 30]),
    double=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_every_method_survives_degenerate_jacobians(name, kind, k, p, exponent, double, seed):
    dtype = torch.float64 if double else torch.float32
    if not double:
        exponent = max(-15, min(15, exponent))  # float32 has no room beyond
    j = jacobian(kind, k, p, 10.0**exponent, dtype, seed)
    torch.manual_seed(seed)
    m = build(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SolverWarning)
        d = m.aggregate(j)
    assert d.shape == (p,) and d.dtype == dtype
    assert torch.isfinite(d).all(), f"{name} gave {d} on {kind}"
    solver_warnings = [w for w in caught if issubclass(w.category, SolverWarning)]
    assert not solver_warnings, [str(w.message) for w in solver_warnings]
    size = float(j.double().abs().max()) if j.numel() else 0.0
    if kind == "zero":
        assert torch.all(d == 0)
    if kind == "identical" and size > 0:  # the update is a non-negative multiple of g
        g = j[0].double()
        coef = float(d.double() @ g) / float(g @ g)
        assert coef >= -1e-6
        assert torch.allclose(d.double(), coef * g, atol=1e-4 * size * k)
    if kind == "opposite" and k == 2 and name in ZERO_ON_OPPOSITE:
        assert torch.allclose(d.double(), torch.zeros(p, dtype=torch.float64),
                              atol=1e-5 * size), f"{name}: {d}"


@pytest.mark.parametrize("name", HOMOGENEOUS + INVARIANT)
@pytest.mark.parametrize("scale", [1e-25, 1e25])
def test_scale_covariance(name, scale):
    j = jacobian("random", 4, 6, 1.0, torch.float64, 3)
    j[1] = -0.7 * j[0] + 0.2 * j[1]
    d = build(name).aggregate(j)
    ds = build(name).aggregate(j * scale)
    factor = scale if name in HOMOGENEOUS else 1.0
    assert torch.allclose(ds / factor, d, rtol=1e-6, atol=1e-9)


def test_fairgrad_on_a_pareto_stationary_point_gives_zero_and_says_so():
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])  # 0 inside the hull
    m = build("fairgrad")
    assert torch.all(m.aggregate(j) == 0)
    assert m.extras["pareto_stationary"] == 1.0


def test_solver_failure_is_loud():
    m = build("fairgrad")
    m.max_iter = 1  # cannot converge in one Newton step
    j = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, -0.5, 0.7]])
    with pytest.warns(SolverWarning):
        m.aggregate(j)
