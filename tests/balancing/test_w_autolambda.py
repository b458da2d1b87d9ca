"""The lookahead mechanism and Auto-Lambda's meta-gradient."""

import pytest
import torch
from torch import nn

from polytask.balancing import get
from polytask.balancing.lookahead import (
    lookahead_losses,
    trainable_parameters,
    unflatten,
    virtual_step,
)


class Line(nn.Module):
    """out = x @ theta, the same output read by every task."""

    def __init__(self):
        super().__init__()
        self.theta = nn.Parameter(torch.tensor([0.5, -0.5]))
        self.bn = nn.BatchNorm1d(2)

    def forward(self, x):
        out = self.bn(x) @ self.theta
        return {"main": out, "good": out, "bad": out}


def data(seed, sign=1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(32, 2, generator=g)
    return x, x @ torch.tensor([2.0, 1.0]) * sign


def test_virtual_step_and_lookahead_leave_the_model_untouched():
    model = Line()
    x, y = data(0)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    d = {"theta": torch.tensor([1.0, 2.0])}
    params = trainable_parameters(model)
    new = virtual_step(params, d, optimizer=opt)  # no momentum buffer yet
    expected = params["theta"].detach() - 0.1 * (d["theta"] + 0.01 * params["theta"].detach())
    assert torch.allclose(new["theta"], expected)

    def loss_of_batch(forward):
        return {"main": ((forward(x)["main"] - y) ** 2).mean()}

    losses, virtual = lookahead_losses(model, loss_of_batch, d, lr=0.1)
    manual = ((nn.functional.batch_norm(x, None, None, training=True) @ virtual["theta"]
               - y) ** 2).mean()
    assert losses["main"].item() == pytest.approx(manual.item(), rel=1e-5)
    (grad,) = torch.autograd.grad(losses["main"], [virtual["theta"]])
    assert grad.shape == (2,)
    for n, v in model.state_dict().items():  # parameters and BN statistics unchanged
        assert torch.equal(v, before[n]), n


def make_balancer(model, meta_lr=0.01):
    xv, yv = data(1)

    def val_loss(forward):
        return {"main": ((forward(xv)["main"] - yv) ** 2).mean()}

    return get("auto-lambda", model=model, val_loss=val_loss, tasks=["main", "good", "bad"],
               primary=["main"], lr=0.1, meta_lr=meta_lr), val_loss


def train_losses(model):
    x, y = data(2)
    out = model(x)
    return {
        "main": ((out["main"] - y) ** 2).mean(),
        "good": ((out["good"] - y) ** 2).mean(),  # helps the primary task
        "bad": ((out["bad"] + y) ** 2).mean(),  # fights it
    }


def test_auto_lambda_meta_gradient_is_exact():
    model = Line()
    balancer, val_loss = make_balancer(model)
    losses = train_losses(model)
    params = trainable_parameters(model)
    from polytask.balancing import engine

    jac = engine.compute_jacobian(list(losses.values()), list(params.values()))
    meta_grad, _ = balancer.meta_gradient(jac, params, list(losses))
    lam = balancer.meta_weights.detach().clone().requires_grad_(True)
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
    direction = lam @ jac  # the virtual step as a function of lambda, by autograd
    virtual = unflatten(flat - 0.1 * direction, params)
    from torch.func import functional_call

    buffers = {n: b.clone() for n, b in model.named_buffers()}
    out = functional_call(model, {**buffers, **virtual}, (data(1)[0],))
    reference = ((out["main"] - data(1)[1]) ** 2).mean()
    (expected,) = torch.autograd.grad(reference, lam)
    assert torch.allclose(meta_grad, expected, rtol=1e-4, atol=1e-7)


def test_auto_lambda_raises_helpful_and_lowers_harmful_task():
    model = Line()
    balancer, _ = make_balancer(model)
    result = balancer.backward(train_losses(model))
    lam = balancer.meta_weights.detach()
    assert lam[1] > 0.1 > lam[2]  # good up, bad down (one Adam step of 0.01)
    assert result.weights["good"] == pytest.approx(lam[1].item())
    # the model's gradient is sum_k lambda_k grad L_k with the updated weights
    losses = train_losses(model)
    expected = sum(w * loss for w, loss in zip(lam, losses.values()))
    (g,) = torch.autograd.grad(expected, [model.theta])
    assert torch.allclose(model.theta.grad, g, rtol=1e-5)
    assert balancer.extra_parameters() == []  # stepped by its own Adam


def test_auto_lambda_without_model_raises():
    balancer = get("auto-lambda")
    with pytest.raises(Exception, match="needs model"):
        balancer.backward({"a": torch.tensor(1.0, requires_grad=True)})
