"""The Jacobian engine's loop and batched strategies agree with hand-made gradients."""

import torch

from polytask.balancing import engine


def test_loop_and_batched_jacobians_match_analytic():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor(0.5, requires_grad=True)
    unused = torch.tensor([7.0], requires_grad=True)
    losses = [(w**2).sum() + b, (w * 3).sum(), b * 0 + 1.0]
    expected = torch.tensor(
        [[2.0, 4.0, 6.0, 1.0, 0.0], [3.0, 3.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    )
    for strategy in ("loop", "batched"):
        jac = engine.compute_jacobian(losses, [w, b, unused], strategy)
        assert torch.allclose(jac, expected), strategy
    chunked = engine.compute_jacobian(losses, [w, b, unused], "batched", chunk_size=2)
    assert torch.allclose(chunked, expected)


def test_leaf_parameters_finds_what_a_loss_uses():
    a = torch.ones(2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    c = torch.ones(2, requires_grad=True)
    loss = (a * b).sum() + a.sum()
    found = engine.leaf_parameters(loss)
    assert {id(t) for t in found} == {id(a), id(b)}
    assert id(c) not in {id(t) for t in found}


def test_add_to_grad_accumulates():
    p = torch.zeros(2, 2, requires_grad=True)
    engine.add_to_grad([p], torch.arange(4.0))
    engine.add_to_grad([p], torch.ones(4))
    assert torch.equal(p.grad, torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
