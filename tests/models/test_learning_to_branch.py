"""LearningToBranch: discrete branching in eval mode, derived Branched tree, split."""

import torch
from _arch_helpers import check_split, mlp_stages, tasks3

from polytask.models import Branched, LearningToBranch

X = torch.randn(4, 6)


def make():
    torch.manual_seed(0)
    return LearningToBranch(mlp_stages, tasks3(), out_features=8)


def test_eval_mode_routes_each_node_through_its_argmax_parent():
    model = make()
    with torch.no_grad():
        model.branch_logits["2_1"].copy_(torch.tensor([0.0, 0.0, 5.0]))
    model.eval()
    out = model(X)
    h0 = model.nodes["0_0"](X)  # stage 1 nodes have one possible parent (one stage-0 node)
    h2 = model.nodes["2_1"](model.nodes["1_2"](h0))
    assert torch.allclose(out["b"], model.heads["b"](h2), atol=1e-6)
    assert torch.equal(out["b"], model(X)["b"])  # discrete: deterministic


def test_derived_tree_and_retrain_model():
    model = make()
    with torch.no_grad():  # stage 2: r and b pick node 0 of stage 1, m picks node 2
        model.branch_logits["2_0"].copy_(torch.tensor([5.0, 0.0, 0.0]))
        model.branch_logits["2_1"].copy_(torch.tensor([5.0, 0.0, 0.0]))
        model.branch_logits["2_2"].copy_(torch.tensor([0.0, 0.0, 5.0]))
    spec = model.derive()
    assert spec == ((("r", "b", "m"),), (("r", "b"), ("m",)), (("r",), ("b",), ("m",)))
    final = model.finalize()
    assert isinstance(final, Branched) and final.spec == spec
    final.train()
    opt = torch.optim.Adam(final.parameters(), lr=1e-2)
    y = torch.randn(4, 1)
    first = last = None
    for _ in range(20):
        loss = (final(X)["r"] - y).pow(2).mean()
        first = first if first is not None else float(loss.detach())
        last = float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert last < first


def test_search_split_and_gradients_reach_the_branching_logits():
    model = make()
    model.train()
    check_split(model, X)
    out = model(X)
    sum(v.float().sum() for v in out.values()).backward()
    assert model.branch_logits["2_0"].grad is not None
    model.on_epoch_start(5)
    assert model.temperature < model.temperature0
