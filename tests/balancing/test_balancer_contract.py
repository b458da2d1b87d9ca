"""The Balancer contract: registry, ew/weighted, gradients, errors, state."""

import pytest
import torch
from torch import nn

from polytask import balancing
from polytask.balancing import BalanceContext, GradientAggregator
from polytask.errors import NonFiniteLossError, PolytaskError, UnknownNameError


def tiny():
    torch.manual_seed(0)
    shared = nn.Linear(3, 4)
    heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)})
    x = torch.randn(8, 3)
    h = shared(x)
    losses = {k: head(h).pow(2).mean() for k, head in heads.items()}
    return shared, heads, losses


def test_registry_lists_and_builds():
    assert {"ew", "weighted"} <= set(balancing.available())
    assert isinstance(balancing.get("EW"), balancing.EqualWeighting)
    with pytest.raises(UnknownNameError, match="unknown balancing method 'nope'; available: .*ew"):
        balancing.get("nope")


def test_ew_equals_plain_sum_backward():
    shared, heads, losses = tiny()
    result = balancing.get("ew").backward(losses, shared_params=shared.parameters())
    got = [p.grad.clone() for p in shared.parameters()]
    shared2, heads2, losses2 = tiny()
    sum(losses2.values()).backward()
    for g, p in zip(got, shared2.parameters()):
        assert torch.allclose(g, p.grad)
    assert result.weights == {"a": 1.0, "b": 1.0}


def test_weighted_uses_user_weights_and_checks_names():
    shared, heads, losses = tiny()
    result = balancing.get("weighted", weights={"a": 3.0}).backward(losses)
    assert result.weights == {"a": 3.0, "b": 1.0}
    grad = heads["a"].weight.grad.clone()
    shared2, heads2, losses2 = tiny()
    (3 * losses2["a"]).backward()
    assert torch.allclose(grad, heads2["a"].weight.grad)
    with pytest.raises(PolytaskError, match="unknown tasks \\['z'\\]"):
        balancing.get("weighted", weights={"z": 1.0}).backward(tiny()[2])
    with pytest.raises(PolytaskError, match="3 weights for 2 tasks"):
        balancing.get("weighted", weights=[1, 2, 3]).backward(tiny()[2])


def test_nan_loss_names_task_and_step():
    balancer = balancing.get("ew")
    balancer.backward(tiny()[2])
    _, _, losses = tiny()
    losses["b"] = losses["b"] * float("nan")
    with pytest.raises(NonFiniteLossError, match=r"\['b'\] at balancer step 1"):
        balancer.backward(losses)


def test_non_scalar_and_empty_losses_rejected():
    with pytest.raises(PolytaskError, match="non-empty"):
        balancing.get("ew").backward({})
    with pytest.raises(PolytaskError, match="task 'a' must be a scalar"):
        balancing.get("ew").backward({"a": torch.ones(3, requires_grad=True)})


class SumOfRows(GradientAggregator):
    """Test aggregator: the plain sum of task gradients, from the Gramian (w = 1)."""

    gramian_based = True

    def weights_from_gramian(self, gramian):
        return torch.ones(gramian.shape[0], dtype=gramian.dtype)


class FirstRowOnly(GradientAggregator):
    """Test aggregator working on the Jacobian itself: keeps task 0's gradient."""

    def aggregate(self, jacobian):
        return jacobian[0]


@pytest.mark.parametrize("path", ["jacobian", "gramian", "representation"])
@pytest.mark.parametrize("strategy", ["loop", "batched"])
def test_aggregator_paths_match_plain_sum(path, strategy):
    shared, heads, losses = tiny()
    h_params = list(shared.parameters())
    agg = SumOfRows(path=path, strategy=strategy)
    if path == "representation":
        torch.manual_seed(0)
        shared = nn.Linear(3, 4)
        heads = nn.ModuleDict({"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)})
        h = shared(torch.randn(8, 3))
        losses = {k: head(h).pow(2).mean() for k, head in heads.items()}
        h_params = list(shared.parameters())
        agg.backward(losses, shared_params=h_params, representation=h)
    else:
        agg.backward(losses, shared_params=h_params)
    got_shared = [p.grad.clone() for p in h_params]
    got_head = heads["a"].weight.grad.clone()
    shared2, heads2, losses2 = tiny()
    sum(losses2.values()).backward()
    for g, p in zip(got_shared, shared2.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    assert torch.allclose(got_head, heads2["a"].weight.grad, atol=1e-6)


def test_direction_aggregator_task_params_get_own_gradient():
    shared, heads, losses = tiny()
    FirstRowOnly().backward(losses, shared_params=shared.parameters())
    got = [p.grad.clone() for p in shared.parameters()]
    got_b = heads["b"].weight.grad.clone()
    shared2, heads2, losses2 = tiny()
    losses2["a"].backward(retain_graph=True)
    for g, p in zip(got, shared2.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    losses2["b"].backward()
    assert torch.allclose(got_b, heads2["b"].weight.grad, atol=1e-6)


def test_gradients_accumulate_like_backward():
    shared, heads, losses = tiny()
    for p in shared.parameters():
        p.grad = torch.ones_like(p)
    SumOfRows(path="jacobian").backward(losses, shared_params=shared.parameters())
    shared2, heads2, losses2 = tiny()
    sum(losses2.values()).backward()
    for g, p in zip(shared.parameters(), shared2.parameters()):
        assert torch.allclose(g.grad, p.grad + 1)


def test_aggregator_needs_shared_params_and_gramian_support():
    with pytest.raises(PolytaskError, match="needs shared_params"):
        SumOfRows().backward(tiny()[2])
    with pytest.raises(ValueError, match="needs the full Jacobian"):
        FirstRowOnly(path="gramian")


def test_balancer_state_round_trips_through_state_dict():
    b = balancing.get("weighted", weights={"a": 2.0})
    b.backward(tiny()[2])
    fresh = balancing.get("weighted")
    fresh.load_state_dict(b.state_dict())
    assert int(fresh.step) == 1 and fresh.user_weights == {"a": 2.0}
    assert fresh.task_names == ["a", "b"]


def test_tasks_must_not_change_between_steps():
    b = balancing.get("ew")
    b.backward(tiny()[2])
    with pytest.raises(PolytaskError, match="tasks changed"):
        b.backward({"a": tiny()[2]["a"]})


def test_context_loss_values():
    ctx = BalanceContext(["a"], [torch.tensor(2.0, requires_grad=True)], [], None, None, 0)
    assert not ctx.loss_values.requires_grad and ctx.loss_values.tolist() == [2.0]
