"""SoftSharing: the l2 / trace-norm penalty, added through the balancing machinery."""

import pytest
import torch
from _arch_helpers import check_split, mlp, tasks3

from polytask import balancing
from polytask.balancing.penalty import Regularized, attach
from polytask.errors import PolytaskError
from polytask.models import HardSharing, SoftSharing

X = torch.randn(4, 6)


def _copy_weights(model):
    first = model.encoders["r"].state_dict()
    for k in model.task_names:
        model.encoders[k].load_state_dict(first)


def test_l2_penalty_is_the_sum_of_pairwise_squared_distances():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3(), penalty="l2", penalty_weight=0.5)
    groups = model.tied_groups()
    brute = sum(((g[i] - g[j]) ** 2).sum() for g in groups
                for i in range(3) for j in range(i + 1, 3))
    assert torch.allclose(model.distance(), brute, rtol=1e-5)
    assert torch.allclose(model.regularization(), 0.5 * brute, rtol=1e-5)
    _copy_weights(model)
    assert float(model.distance().detach()) == pytest.approx(0.0, abs=1e-5)


def test_trace_norm_is_the_nuclear_norm_of_stacked_parameters():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3(), penalty="trace")
    groups = model.tied_groups()
    expected = sum(torch.linalg.svdvals(torch.stack([p.reshape(-1) for p in g])).sum()
                   for g in groups)
    assert torch.allclose(model.distance(), expected, rtol=1e-5)
    # identical task networks: rank one, so the trace norm is that of one column × sqrt(K)
    _copy_weights(model)
    one = sum(torch.linalg.vector_norm(g[0]) for g in model.tied_groups())
    assert torch.allclose(model.distance(), one * 3**0.5, rtol=1e-4)
    tucker = SoftSharing(mlp, tasks3(), penalty="tucker")
    assert float(tucker.distance().detach()) > 0


def test_penalty_gradient_is_added_by_the_balancer_not_the_loop():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3(), penalty="l2", penalty_weight=0.1)
    balancer = attach(balancing.get("ew"), model)
    assert isinstance(balancer, Regularized)
    out = model(X)
    losses = {k: v.float().pow(2).mean() for k, v in out.items()}
    expected = torch.autograd.grad(
        sum(losses.values()) + model.regularization(), list(model.parameters()),
        retain_graph=True,
    )
    result = balancer.backward(losses, shared_params=model.shared_parameters())
    for p, g in zip(model.parameters(), expected):
        assert torch.allclose(p.grad, g, atol=1e-6)
    assert result.extras["penalty"] > 0 and set(result.weights) == {"r", "b", "m"}


def test_penalty_pulls_the_task_networks_together():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3(), penalty="l2", penalty_weight=1.0)
    balancer = Regularized("ew", penalty=model)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    start = float(model.distance().detach())
    for _ in range(20):
        out = model(X)
        opt.zero_grad()
        balancer.backward({k: 0.0 * v.float().sum() for k, v in out.items()})
        opt.step()
    assert float(model.distance().detach()) < 0.5 * start


def test_split_nothing_shared_and_attach_is_a_no_op_without_penalty():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3())
    assert list(model.shared_parameters()) == []
    check_split(model, X)
    ew = balancing.get("ew")
    hard = HardSharing(mlp(), tasks3())
    assert attach(ew, hard) is ew


def test_bad_input():
    with pytest.raises(PolytaskError, match="penalty"):
        SoftSharing(mlp, tasks3(), penalty="l1")
    with pytest.raises(PolytaskError, match="penalty"):
        Regularized("ew")


def test_wrapper_state_holds_no_model_parameters_and_round_trips():
    torch.manual_seed(0)
    model = SoftSharing(mlp, tasks3())
    balancer = Regularized("ew", penalty=model, weight=2.0)
    out = model(X)
    balancer.backward({k: v.float().pow(2).mean() for k, v in out.items()})
    state = balancer.state_dict()
    assert not any(k.startswith("encoders") for k in state)
    assert balancer.extra_parameters() == []
    fresh = Regularized("ew", penalty=model)
    fresh.load_state_dict(state)
    assert fresh.weight == 2.0 and int(fresh.step) == 1 and fresh.task_names == ["r", "b", "m"]
