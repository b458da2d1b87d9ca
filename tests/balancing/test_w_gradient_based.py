"""Defining rules of the weightings that read per-task gradients: IMTL(-G), DB-MTL,
ExcessMTL."""

import math

import pytest
import torch
from torch import nn

from polytask.balancing import get
from polytask.balancing.weighting import imtl_g_weights


def test_imtl_g_equal_projections_on_unit_gradients():
    torch.manual_seed(0)
    for k in (2, 3, 5):
        jac = torch.randn(k, 20) * torch.tensor([1.0, 10.0, 0.1, 3.0, 0.5][:k]).unsqueeze(1)
        alpha = imtl_g_weights(jac @ jac.T)
        assert alpha.sum().item() == pytest.approx(1.0, abs=1e-6)
        g = alpha @ jac
        units = jac / jac.norm(dim=1, keepdim=True)
        proj = units @ g
        assert torch.allclose(proj, proj[0].expand_as(proj), rtol=1e-4)


def _two_task_model():
    torch.manual_seed(1)
    enc = nn.Linear(4, 3)
    heads = nn.ModuleDict({"a": nn.Linear(3, 1), "b": nn.Linear(3, 1)})
    x = torch.randn(16, 4)
    ya, yb = torch.randn(16), 50 * torch.randn(16)

    def losses():
        z = enc(x)
        return {"a": ((heads["a"](z).squeeze(1) - ya) ** 2).mean(),
                "b": ((heads["b"](z).squeeze(1) - yb) ** 2).mean()}, z

    return enc, heads, losses


def _grads(losses, params):
    rows = []
    for loss in losses.values():
        g = torch.autograd.grad(loss, params, retain_graph=True)
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(rows)


@pytest.mark.parametrize("path", ["parameters", "representation"])
def test_imtl_hybrid_shared_update_is_impartial(path):
    enc, heads, make = _two_task_model()
    imtl = get("imtl", tasks=["a", "b"], path=path)
    losses, z = make()
    jac = _grads(losses, list(enc.parameters()))
    result = imtl.backward(losses, shared_params=list(enc.parameters()), representation=z)
    g = torch.cat([p.grad.reshape(-1) for p in enc.parameters()])
    if path == "parameters":  # the shared update projects equally on each unit gradient
        proj = (jac / jac.norm(dim=1, keepdim=True)) @ g
        assert proj[0].item() == pytest.approx(proj[1].item(), rel=1e-4)
    w = torch.tensor([result.weights["a"], result.weights["b"]])
    assert torch.allclose(g, w @ jac, rtol=1e-4, atol=1e-6)
    # heads get their own (scaled, s = 0 at the start) loss gradient
    ga = torch.autograd.grad(make()[0]["a"], list(heads["a"].parameters()))
    assert torch.allclose(heads["a"].weight.grad, ga[0], rtol=1e-5)
    # the loss scales received the IMTL-L gradient e^s L - 1
    assert imtl.log_scales.grad[1].item() == pytest.approx(losses["b"].item() - 1, rel=1e-5)


def test_db_mtl_scale_invariant_and_equal_magnitudes():
    def run(scale):
        theta = nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
        head = nn.Parameter(torch.tensor(1.5))
        a, b = torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 1.0, -1.0])
        losses = {"a": scale * (theta @ a) ** 2 * head**2, "b": (theta @ b - 1) ** 2}
        db = get("db-mtl")
        r = db.backward(losses, shared_params=[theta])
        return theta.grad.clone(), head.grad.clone(), r, db, losses, theta, a, b

    g1, h1, r1, db, losses, theta, a, b = run(1.0)
    g2, h2, r2, *_ = run(1000.0)
    assert torch.allclose(g1, g2, rtol=1e-5)  # log-losses: the scale of a loss is gone
    assert torch.allclose(h1, h2, rtol=1e-5)
    assert h1.item() == pytest.approx(2 / 1.5, rel=1e-5)  # d log(c h^2)/dh on the head
    # step 1: buffer = (1 - beta) g; alpha_k = max norm / norm_k; every task the same size
    ga = 2 * a / (theta.detach() @ a)
    gb = 2 * b / (theta.detach() @ b - 1)
    na, nb = ga.norm(), gb.norm()
    big = 0.1 * max(na, nb)
    expected = big * (ga / na + gb / nb)
    assert torch.allclose(g1, expected, rtol=1e-5)
    assert r1.weights["a"] == pytest.approx(float(max(na, nb) / na), rel=1e-4)


def test_db_mtl_smooths_gradients_over_steps():
    theta = nn.Parameter(torch.tensor([1.0, 1.0]))
    db = get("db-mtl", beta=0.5)
    db.backward({"a": theta[0] * 2.0, "b": theta[1] * 3.0}, shared_params=[theta])
    first = db.buffer.clone()
    db.backward({"a": theta[0] * 2.0, "b": theta[1] * 3.0}, shared_params=[theta])
    g = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # d log(c theta) / d theta at theta = 1
    assert torch.allclose(first, 0.5 * g)
    assert torch.allclose(db.buffer, g + 0.5 * (first - g))


def test_excess_mtl_exponentiated_step_on_relative_excess_risk():
    theta = nn.Parameter(torch.zeros(2))
    ex = get("excess-mtl", step_size=0.5)
    r0 = ex.backward({"a": theta[0] + 1.0, "b": theta[1] + 1.0}, shared_params=[theta])
    assert r0.weights == {"a": 1.0, "b": 1.0}  # first step sets the reference risks
    theta.grad = None
    r1 = ex.backward({"a": 2 * theta[0] + 1.0, "b": theta[1] + 1.0}, shared_params=[theta])
    ea = 4 / math.sqrt(5 + 1e-7) / (1 / math.sqrt(1 + 1e-7))
    eb = 1 / math.sqrt(2 + 1e-7) / (1 / math.sqrt(1 + 1e-7))
    wa, wb = math.exp(0.5 * ea), math.exp(0.5 * eb)
    assert r1.weights["a"] == pytest.approx(2 * wa / (wa + wb), rel=1e-5)
    assert r1.weights["a"] > 1 > r1.weights["b"]  # the larger excess risk gets more weight
    assert theta.grad.tolist() == pytest.approx([2 * r1.weights["a"], r1.weights["b"]], rel=1e-5)
