"""Defining rules of DWA, RLW, GLS, scalarization and STCH on hand-made losses."""

import math

import pytest
import torch

from polytask.balancing import get
from polytask.balancing.weighting import dwa_weights, random_simplex, simplex_grid, sweep
from polytask.errors import PolytaskError


def losses_of(values, params=None):
    """{task: scalar loss} whose gradient w.r.t. ``params[k]`` is 1 per unit of loss."""
    params = params or [torch.ones((), requires_grad=True) for _ in values]
    return {f"t{k}": p * v for k, (p, v) in enumerate(zip(params, values))}, params


def test_dwa_weights_from_two_known_loss_ratios():
    dwa = get("dwa", temperature=2.0)
    # epoch 1: losses (1, 1); epoch 2: (0.5, 0.9): ratios 0.5, 0.9
    for values in [(1.0, 1.0), (0.5, 0.9)]:
        result = dwa.backward(losses_of(values)[0])
        assert result.weights == {"t0": 1.0, "t1": 1.0}  # weights 1 in the first two epochs
        dwa.on_epoch_end(0)
    result = dwa.backward(losses_of((0.4, 0.8))[0])
    e0, e1 = math.exp(0.5 / 2), math.exp(0.9 / 2)
    assert result.weights["t0"] == pytest.approx(2 * e0 / (e0 + e1), rel=1e-5)
    assert result.weights["t1"] == pytest.approx(2 * e1 / (e0 + e1), rel=1e-5)
    assert result.weights["t1"] > result.weights["t0"]  # the slower task gets more


def test_dwa_uses_epoch_means_and_rule_function():
    w = dwa_weights(torch.tensor([2.0, 1.0]), torch.tensor([4.0, 1.0]), 1.0)
    assert w.sum() == pytest.approx(2.0)
    assert w[1] > w[0]
    dwa = get("dwa")
    for epoch_values in [[(2.0, 1.0), (4.0, 1.0)], [(1.5, 1.0), (1.5, 1.0)]]:
        for values in epoch_values:
            dwa.backward(losses_of(values)[0])
        dwa.on_epoch_end()
    r = dwa.backward(losses_of((1.0, 1.0))[0]).weights
    expected = dwa_weights(torch.tensor([1.5, 1.0]), torch.tensor([3.0, 1.0]), 2.0)
    assert [r["t0"], r["t1"]] == pytest.approx(expected.tolist(), rel=1e-5)


def test_rlw_weights_on_simplex_random_and_reproducible():
    a, b = get("rlw", seed=3), get("rlw", seed=3)
    seen = []
    for _ in range(200):
        wa = a.backward(losses_of((1.0, 2.0, 3.0))[0]).weights
        wb = b.backward(losses_of((1.0, 2.0, 3.0))[0]).weights
        assert wa == wb
        assert sum(wa.values()) == pytest.approx(1.0, abs=1e-6)
        assert min(wa.values()) > 0
        seen.append(list(wa.values()))
    mean = torch.tensor(seen).mean(0)
    assert torch.allclose(mean, torch.full((3,), 1 / 3), atol=0.05)  # equal in expectation
    assert torch.tensor(seen).std(0).min() > 0.05  # and actually random
    for dist in ("uniform", "dirichlet", "bernoulli"):
        w = get("rlw", distribution=dist, seed=0).backward(losses_of((1.0, 1.0))[0]).weights
        assert sum(w.values()) == pytest.approx(1.0)


def test_gls_gradient_is_scale_invariant_in_direction():
    def direction(scale):
        theta = torch.tensor([1.0, -2.0], requires_grad=True)
        l0 = (theta[0] - 3) ** 2 + 0.1
        l1 = scale * ((theta[1] + 1) ** 2 + 0.2)
        result = get("gls").backward({"a": l0, "b": l1})
        return theta.grad.clone(), result.weights, (l0.item(), l1.item())

    g1, w1, (a, b) = direction(1.0)
    g2, _, _ = direction(1000.0)
    assert torch.allclose(g1 / g1.norm(), g2 / g2.norm(), atol=1e-6)
    geo = math.sqrt(a * b)
    assert w1["a"] == pytest.approx(geo / (2 * a), rel=1e-5)
    assert w1["b"] == pytest.approx(geo / (2 * b), rel=1e-5)


def test_scalarization_weights_and_grid():
    grid = simplex_grid(["a", "b"], 4)
    assert [g["a"] for g in grid] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(simplex_grid(["a", "b", "c"], 4)) == 15
    assert all(sum(g.values()) == pytest.approx(1.0) for g in random_simplex(["a", "b", "c"], 5))
    losses, params = losses_of((1.0, 1.0))
    w = get("scalarization", weights={"t0": 0.25, "t1": 0.75}).backward(losses).weights
    assert w == {"t0": 0.5, "t1": 1.5}  # scaled to sum K
    assert params[0].grad.item() == pytest.approx(0.5)
    centre = get("scalarization", weights=[0.5, 0.5]).backward(losses_of((1.0, 1.0))[0])
    assert centre.weights == {"t0": 1.0, "t1": 1.0}  # = equal weighting
    with pytest.raises(PolytaskError, match="lack tasks"):
        get("scalarization", weights={"t0": 1.0}).backward(losses_of((1.0, 1.0))[0])
    best, score, results = sweep(lambda w: -abs(w["a"] - 0.75), grid)
    assert best == {"a": 0.75, "b": 0.25} and len(results) == 5 and score == 0


def test_stch_smooth_max_weights_and_warmup():
    stch = get("stch", mu=0.5, warmup_epochs=1)
    # warm-up: sum of log-losses (weights 1/L); nadir from the last warm-up epoch
    for values in [(2.0, 4.0), (2.0, 4.0)]:
        r = stch.backward(losses_of(values)[0])
        assert r.weights["t0"] == pytest.approx(0.5) and r.weights["t1"] == pytest.approx(0.25)
    stch.on_epoch_end(0)
    assert stch.nadir.tolist() == [2.0, 4.0]
    losses, params = losses_of((1.0, 4.0))  # t0 halved, t1 unchanged: t1 is worst
    r = stch.backward(losses)
    logs = torch.log(torch.tensor([0.5, 1.0]))
    soft = torch.softmax(logs / 0.5, 0)
    assert r.weights["t0"] == pytest.approx(2 * soft[0].item() / 1.0, rel=1e-5)
    assert r.weights["t1"] == pytest.approx(2 * soft[1].item() / 4.0, rel=1e-5)
    assert params[1].grad.item() == pytest.approx(r.weights["t1"] * 4.0, rel=1e-5)  # dL/dp = 4
    # mu -> 0 concentrates on the worst task; mu -> inf spreads evenly
    sharp = get("stch", mu=1e-3, warmup_epochs=0).backward(losses_of((1.0, 3.0))[0]).weights
    assert sharp["t0"] == pytest.approx(0.0, abs=1e-6)
    flat = get("stch", mu=1e6, warmup_epochs=0).backward(losses_of((1.0, 3.0))[0]).weights
    assert flat["t0"] * 1.0 == pytest.approx(flat["t1"] * 3.0, rel=1e-4)  # K/2 / L each
