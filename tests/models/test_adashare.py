"""AdaShare: discrete policy in eval mode, curriculum, losses via the balancer, retrain."""

import pytest
import torch
from _arch_helpers import check_split, tasks3
from torch import nn

from polytask import balancing
from polytask.balancing.penalty import attach
from polytask.errors import PolytaskError
from polytask.models import AdaShare

X = torch.randn(4, 6)


def blocks():
    return [nn.Sequential(nn.Linear(6, 6), nn.ReLU()) for _ in range(4)] + [nn.Linear(6, 5)]


def make(**kw):
    torch.manual_seed(0)
    return AdaShare(blocks, tasks3(), example_input=torch.randn(2, 6), **kw)


def test_only_shape_preserving_blocks_are_skippable():
    model = make()
    assert model.skippable == [True, True, True, True, False]
    assert model.searching


def test_policy_in_evaluation_mode_is_discrete():
    model = make()
    with torch.no_grad():
        model.policy_logits["r"][1] = torch.tensor([-3.0, 3.0])  # skip block 1
    model.eval()
    policy = model.derive()
    assert policy.dtype == torch.bool and not bool(policy[0, 1]) and bool(policy[1, 1])
    out1, out2 = model(X), model(X)
    assert torch.equal(out1["r"], out2["r"])  # deterministic
    h = X
    for i, stage in enumerate(model.stages):
        h = h if i == 1 else stage(h)
    assert torch.allclose(out1["r"], model.heads["r"](h), atol=1e-6)


def test_search_forward_is_stochastic_and_the_losses_reach_the_policy():
    model = make(sparsity_weight=1.0, sharing_weight=1.0)
    model.train()
    balancer = attach(balancing.get("ew"), model)
    out = model(X)
    losses = {k: v.float().pow(2).mean() for k, v in out.items()}
    result = balancer.backward(losses)
    assert result.extras["penalty"] != 0
    for name in model.task_names:
        assert model.policy_logits[name].grad.abs().sum() > 0
    check_split(model, X, require_reach=False)


def test_sparsity_loss_favours_skipping_and_sharing_loss_favours_agreement():
    model = make(sparsity_weight=1.0, sharing_weight=0.0)
    model.train()
    reg = model.regularization()
    (g,) = torch.autograd.grad(reg, [model.policy_logits["r"]])
    assert bool((g[:4, 0] > 0).all())  # descending lowers the select logit
    model = make(sparsity_weight=0.0, sharing_weight=1.0)
    model.train()
    with torch.no_grad():
        model.policy_logits["r"][0] = torch.tensor([2.0, 0.0])
    (g,) = torch.autograd.grad(model.regularization(), [model.policy_logits["b"]])
    assert g[0, 0] < 0  # b is pulled towards r's higher select probability at block 0


def test_curriculum_and_warmup():
    model = make(warmup_epochs=1)
    model.on_epoch_start(0)
    assert model.warming_up and model.regularization() is None
    model.on_epoch_start(1)
    assert not model.warming_up and model.learnable_from == 4
    model.on_epoch_start(3)
    assert model.learnable_from == 2 and model.temperature < model.temperature0


def test_finalize_gives_a_discrete_model_that_trains():
    model = make()
    with torch.no_grad():
        for name in ("r", "b", "m"):
            model.policy_logits[name][3] = torch.tensor([-3.0, 3.0])  # nobody runs block 3
        model.policy_logits["r"][2] = torch.tensor([-3.0, 3.0])
    final = model.finalize()
    assert not final.searching and final.fixed_policy.dtype == torch.bool
    assert isinstance(final.stages[3], nn.Identity)
    check_split(final, X)
    own = {id(p) for p in final.task_parameters("b")}
    shared = {id(p) for p in final.shared_parameters()}
    assert all(id(p) in shared for p in final.stages[0].parameters())
    assert not any(id(p) in own for p in final.stages[2].parameters())  # b and m run it
    final.train()
    opt = torch.optim.Adam(final.parameters(), lr=1e-2)
    y = torch.randn(4, 1)
    losses = []
    for _ in range(20):
        loss = (final(X)["r"] - y).pow(2).mean()
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    a, b = final(X), final(X)
    assert torch.equal(a["b"], b["b"])
    kept = model.finalize(reinitialize=False)
    assert torch.equal(kept.stages[0][0].weight, model.stages[0][0].weight)


def test_bad_policy():
    with pytest.raises(PolytaskError, match="cannot be skipped"):
        make(policy=[[True] * 4 + [False]] * 3)
    with pytest.raises(PolytaskError, match="policy must be"):
        make(policy=[[True] * 5])
