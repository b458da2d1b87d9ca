"""Scalarizations: the balancer's gradient is the function's; where each one's minimiser
lies on a front that linear scalarization cannot cover."""

import math

import pytest
import torch

from polytask import balancing
from polytask.pareto import (
    FUNCTIONS,
    PreferenceError,
    augmented_tchebycheff,
    cosmos,
    linear,
    loss_direction,
    pbi,
    smooth_tchebycheff,
    tchebycheff,
)

NAMES = sorted(FUNCTIONS)


def _concave_front(n=20001):
    """Minimised losses on the quarter circle: a concave front (linear scalarization only
    ever picks an end point)."""
    t = torch.linspace(0, math.pi / 2, n, dtype=torch.float64)
    return torch.stack([torch.cos(t), torch.sin(t)], 1)


def _argmin(fn, pref, **kw):
    pts = _concave_front()
    values = torch.stack([fn(p, pref, None, **kw) for p in pts])
    return pts[int(values.argmin())]


def test_linear_scalarization_misses_the_concave_middle():
    best = _argmin(linear, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert min(best.tolist()) < 1e-6  # an end point


@pytest.mark.parametrize("fn,kw", [(tchebycheff, {}), (augmented_tchebycheff, {"rho": 1e-3}),
                                    (smooth_tchebycheff, {"mu": 1e-3}), (pbi, {"theta": 5.0})])
@pytest.mark.parametrize("p1", [0.3, 0.5, 0.8])
def test_tchebycheff_family_reaches_the_ray_on_a_concave_front(fn, kw, p1):
    pref = torch.tensor([p1, 1 - p1], dtype=torch.float64)
    best = _argmin(fn, pref, **kw)
    target = loss_direction(pref)
    angle = torch.arccos((best @ target / best.norm()).clamp(-1, 1))
    assert float(angle) < 0.02


def test_smooth_tchebycheff_bounds_tchebycheff():
    losses = torch.tensor([0.3, 0.9, 0.5], dtype=torch.float64)
    pref = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    for mu in (1.0, 0.1, 0.01):
        s, t = smooth_tchebycheff(losses, pref, mu=mu), tchebycheff(losses, pref)
        assert t <= s <= t + mu * math.log(3) + 1e-12


def test_cosmos_objective_formula():
    losses = torch.tensor([0.2, 0.6], dtype=torch.float64)
    pref = torch.tensor([0.25, 0.75], dtype=torch.float64)
    cos = float(losses @ pref / (losses.norm() * pref.norm()))
    assert float(cosmos(losses, pref, lamda=2.0)) == pytest.approx(0.05 + 0.45 - 2 * cos)


@pytest.mark.parametrize("name", NAMES)
def test_balancer_gradient_equals_the_function_gradient(name):
    torch.manual_seed(0)
    x = torch.randn(4, requires_grad=True)
    a, b = torch.randn(4), torch.randn(4)
    pref = [0.3, 0.7]

    def losses():
        return {"a": ((x - a) ** 2).sum(), "b": ((x - b) ** 2).sum() + 0.1}

    balancer = balancing.get(name, pref=pref)
    balancer.backward(losses())
    got = x.grad.clone()
    x.grad = None
    ls = losses()
    vec = torch.stack([ls["a"], ls["b"]])
    FUNCTIONS[name](vec, torch.tensor(pref), None).backward()
    torch.testing.assert_close(got, x.grad)


def test_bad_preference_in_a_balancer_names_the_value():
    x = torch.ones(2, requires_grad=True)
    with pytest.raises(PreferenceError, match="3 entries for 2 tasks"):
        balancing.get("tchebycheff", pref=[0.2, 0.3, 0.5]).backward(
            {"a": x.sum(), "b": (x**2).sum()})
    with pytest.raises(PreferenceError, match="negative"):
        balancing.get("pbi", pref=[-1, 2]).backward({"a": x.sum(), "b": (x**2).sum()})


def test_stch_reference_is_the_stateful_variant():
    from polytask.balancing.weighting import SmoothTchebycheff

    assert isinstance(balancing.get("stch-reference"), SmoothTchebycheff)
