"""EPO and Pareto MTL: their linear programs' guarantees, and where they converge on a
two-objective problem with a known front."""

import numpy as np
import pytest
import torch

from polytask import balancing
from polytask.pareto import EPO, ParetoMTL, PreferenceError, circle_rays, epo_weights
from polytask.pareto.indicators import preference_fidelity

pytest.importorskip("scipy")


def _problem():
    """L1 = |x - a|², L2 = |x - b|² + 0.5: the front is the segment between a and b,
    convex; every ray is reachable."""
    a = torch.tensor([1.0, 0.0, 0.5])
    b = torch.tensor([-1.0, 0.5, 0.0])
    return a, b


def _train(balancer, steps=600, lr=0.02, seed=0):
    a, b = _problem()
    torch.manual_seed(seed)
    x = torch.zeros(3, requires_grad=True)
    with torch.no_grad():
        x.add_(torch.tensor([0.0, 2.0, 2.0]))  # start far from the front
    opt = torch.optim.SGD([x], lr=lr)
    for epoch in range(steps):
        opt.zero_grad()
        losses = {"a": ((x - a) ** 2).sum(), "b": ((x - b) ** 2).sum() + 0.5}
        balancer.backward(losses, shared_params=[x])
        opt.step()
        if epoch % 100 == 99:
            balancer.on_epoch_end(epoch, {})
    with torch.no_grad():
        return np.array([float(((x - a) ** 2).sum()), float(((x - b) ** 2).sum() + 0.5)])


@pytest.mark.parametrize("p1", [0.2, 0.5, 0.8])
def test_epo_reaches_its_exact_pareto_optimal_ray(p1):
    pref = [p1, 1 - p1]
    losses = _train(EPO(pref=pref))
    # on the ray: r_k L_k equal
    assert preference_fidelity([pref], [losses])[0] < 0.02
    # and on the front: |x-a| + |x-b| = |a-b| for points of the segment
    a, b = _problem()
    d = float((a - b).norm())
    assert np.sqrt(losses[0]) + np.sqrt(losses[1] - 0.5) == pytest.approx(d, rel=1e-2)


def test_epo_descent_step_conflicts_with_no_task():
    rng = np.random.default_rng(0)
    for _ in range(20):
        g = rng.normal(size=(3, 6))
        c = g @ g.T
        losses = np.array([1.0, 1.0, 1.0])  # r ⊙ l uniform: a descent step
        beta, move = epo_weights(c, losses, np.full(3, 1 / 3))
        assert move == "descent"
        assert beta.min() >= -1e-9 and beta.sum() == pytest.approx(1.0)
        d = beta @ g
        if np.linalg.norm(d) > 1e-6:
            assert (g @ d >= -1e-7).all()


def test_epo_balance_step_does_not_raise_the_worst_loss():
    rng = np.random.default_rng(1)
    for _ in range(20):
        g = rng.normal(size=(2, 5))
        losses = np.array([2.0, 0.5])
        beta, move = epo_weights(g @ g.T, losses, np.array([0.5, 0.5]))
        assert move.startswith("balance")
        d = beta @ g
        assert g[0] @ d >= -1e-7  # the worst-off task (largest r l) goes down


@pytest.mark.parametrize("index", [0, 2, 4])
def test_pareto_mtl_ends_in_its_sub_region(index):
    rays = circle_rays(5)
    losses = _train(ParetoMTL(prefs=rays, index=index, init_epochs=2))
    u = np.c_[np.cos(np.linspace(0, np.pi / 2, 5)), np.sin(np.linspace(0, np.pi / 2, 5))]
    # its reference vector is the closest (by angle) to the loss vector: all G_j <= 0
    g = (u - u[index]) @ (losses / np.linalg.norm(losses))
    assert (g <= 1e-3).all()


def test_pareto_mtl_weights_use_only_the_gramian_and_losses():
    m = ParetoMTL(prefs=circle_rays(3), index=0, init_epochs=0)
    m.current_losses = torch.tensor([1.0, 1.0], dtype=torch.float64)
    g = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
    w = m.weights_from_gramian(g)
    assert float(w.abs().sum()) == pytest.approx(2.0)  # Σ|w| = K in phase 2


def test_bad_rays_are_refused():
    with pytest.raises(PreferenceError, match="at least two"):
        ParetoMTL(prefs=[[0.5, 0.5]], index=0)
    with pytest.raises(PreferenceError, match="out of range"):
        ParetoMTL(prefs=circle_rays(3), index=3)
    with pytest.raises(PreferenceError, match="all zero"):
        EPO(pref=[0.0, 0.0])
    with pytest.raises(PreferenceError, match="non-finite"):
        balancing.get("epo", pref=[float("inf"), 1.0])
    epo = EPO(pref=[0.2, 0.3, 0.5])  # the length is checked against the tasks at the step
    theta = torch.ones(2, requires_grad=True)
    with pytest.raises(PreferenceError, match="3 entries for 2 tasks"):
        epo.backward({"a": theta[0] ** 2, "b": (theta[1] - 2) ** 2}, shared_params=[theta])
    with pytest.raises(PreferenceError, match="negative"):
        balancing.get("epo", pref=[-1, 2]).backward(
            {"a": torch.ones(1, requires_grad=True).sum(),
             "b": torch.ones(1, requires_grad=True).sum()},
            shared_params=[torch.ones(1, requires_grad=True)])


def test_registered_by_name_and_gramian_path_agrees():
    assert isinstance(balancing.get("epo"), EPO)
    a = _train(EPO(pref=[0.3, 0.7], path="jacobian"), steps=50)
    b = _train(EPO(pref=[0.3, 0.7], path="gramian"), steps=50)
    np.testing.assert_allclose(a, b, rtol=1e-5)
