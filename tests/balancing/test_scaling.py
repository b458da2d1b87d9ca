"""float16 loss scaling inside the balancers (polytask.balancing.scaling): with a
GradScaler's scale, every method's weights and update equal the unscaled ones."""

import math

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.balancing import scaling
from polytask.errors import PolytaskError
from polytask.training import MultiTaskDataset, batch_loader

METHODS = [m for m in pt.balancing.available()
           if m != "regularized"
           and "settings" not in getattr(pt.balancing.method_class(m), "requires", ())]
SCALE = 2.0**12


def data(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = {"a": (x[:, 0] > 0).float(), "b": (x[:, 1] > 0).float(), "c": x[:, 2].clone()}
    return x, y


def run(method: str, grad_scale, steps: int = 3, settings=None):
    """A plain loop; with ``grad_scale``, a CPU GradScaler (fixed scale) steps."""
    x, y = data()
    torch.manual_seed(0)
    tasks = {t.name: t for t in [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]}
    model = pt.HardSharing(nn.Sequential(nn.Linear(8, 16), nn.Tanh()), tasks,
                           encoder_out_features=16)
    balancer = pt.balancing.get(method, **(settings or {}))
    balancer.prepare(list(tasks))
    optimizer = torch.optim.Adam([*model.parameters(), *balancer.extra_parameters()], lr=1e-2)
    loader = batch_loader(MultiTaskDataset(x, y), batch_size=16, shuffle=False)
    balancer.attach(model=model, optimizer=optimizer, tasks=tasks, loader=loader)
    scaler = None
    if grad_scale is not None:
        scaler = torch.amp.GradScaler("cpu", init_scale=grad_scale, growth_interval=10**6)
    weights = []
    batches = list(loader)
    for step in range(steps):
        xb, targets = batches[step % len(batches)]
        losses = pt.tasks.compute_losses(tasks, model(xb), targets)
        optimizer.zero_grad()
        result = balancer.backward(losses, shared_params=model.shared_parameters(),
                                   representation=model.shared_representation,
                                   grad_scale=scaler)
        weights.append(result.weights)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()
        if balancer.needs_losses_after_step:
            with torch.no_grad():
                balancer.on_step_end(pt.tasks.compute_losses(tasks, model(xb), targets))
    return weights, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_a_grad_scale_gives_the_unscaled_weights_and_update(method):
    w_plain, p_plain = run(method, None)
    w_scaled, p_scaled = run(method, SCALE)
    for a, b in zip(w_plain, w_scaled):
        assert a.keys() == b.keys()
        for name in a:
            assert math.isclose(a[name], b[name], rel_tol=1e-5, abs_tol=1e-7), (method, a, b)
    for a, b in zip(p_plain, p_scaled):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), method


@pytest.mark.parametrize("method", ["nash-mtl", "fairgrad", "mgda:normalization=loss",
                                    "gradnorm"])
def test_scaling_the_losses_naively_changes_the_weights_but_grad_scale_does_not(method):
    """The reason for the mechanism: the rule on s·J is not the rule on J (Nash-MTL's
    weights scale as 1/s, FairGrad's as s^(-1/alpha)); MGDA's are scale-invariant."""
    name, _, setting = method.partition(":")
    settings = dict([setting.split("=")]) if setting else {}

    def weights(losses_scale, grad_scale):
        torch.manual_seed(0)
        shared = nn.Linear(3, 4)
        heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(3)])
        h = torch.tanh(shared(torch.randn(8, 3)))
        losses = {f"t{k}": losses_scale * (k + 1) * head(h).pow(2).mean()
                  for k, head in enumerate(heads)}
        balancer = pt.balancing.get(name, **settings)
        balancer.prepare(list(losses))
        result = balancer.backward(losses, shared_params=shared.parameters(),
                                   grad_scale=grad_scale)
        return torch.tensor(list(result.weights.values())), shared.weight.grad.clone()

    w, g = weights(1.0, None)
    w_naive, _ = weights(SCALE, None)
    w_scaled, g_scaled = weights(1.0, SCALE)
    assert torch.allclose(w, w_scaled, rtol=1e-6)
    assert torch.allclose(g * SCALE, g_scaled, rtol=1e-5)  # .grad holds s × the update
    if name in ("nash-mtl", "fairgrad"):
        assert not torch.allclose(w, w_naive, rtol=1e-3)


def test_an_overflow_skips_the_rule_and_the_scalers_step():
    torch.manual_seed(0)
    shared = nn.Linear(3, 4)
    heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
    optimizer = torch.optim.SGD([*shared.parameters(), *heads.parameters()], lr=0.1)
    before = [p.detach().clone() for p in shared.parameters()]
    h = shared(torch.randn(8, 3))
    losses = {"a": heads[0](h).pow(2).mean() * 1e30, "b": heads[1](h).pow(2).mean()}
    balancer = pt.balancing.get("nash-mtl")
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    result = balancer.backward(losses, shared_params=shared.parameters(), grad_scale=scaler)
    assert result.extras["grad_overflow"] == 1.0
    scaler.step(optimizer)
    scaler.update()
    assert scaler.get_scale() < 2.0**100  # lowered, as for any overflowing step
    for a, p in zip(before, shared.parameters()):
        assert torch.equal(a, p.detach())  # the step was skipped


def test_bad_grad_scales_are_rejected():
    with pytest.raises(PolytaskError, match="finite and positive"):
        scaling.resolve(-1.0)
    with pytest.raises(PolytaskError, match="GradScaler, a positive number"):
        scaling.resolve("big")
    assert scaling.resolve(torch.amp.GradScaler("cpu", enabled=False)) is None
    assert scaling.resolve(1) is None


def test_a_method_without_scaling_support_names_itself_and_the_fix():
    class Custom(pt.balancing.LossWeighting):
        supports_grad_scale = False

        def weights(self, losses, ctx):
            return torch.ones_like(losses)

    _, _, losses = (None, None, {"a": torch.ones((), requires_grad=True)})
    with pytest.raises(PolytaskError, match="Custom does not support float16 .*bf16"):
        Custom().backward(losses, grad_scale=1024.0)


def test_half_precision_representation_gradients_reach_rules_in_float32():
    torch.manual_seed(0)
    shared = nn.Linear(3, 4)
    heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
    x = torch.randn(8, 3)
    seen = {}

    class Spy(pt.balancing.GradientAggregator):  # a rule on the Jacobian itself
        def aggregate(self, jacobian):
            seen["dtype"] = jacobian.dtype
            return jacobian.sum(0)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = shared(x)
        losses = {f"t{k}": head(h).float().pow(2).mean() for k, head in enumerate(heads)}
    assert h.dtype == torch.bfloat16
    Spy(path="representation").backward(losses, shared_params=shared.parameters(),
                                         representation=h)
    assert seen["dtype"] == torch.float32
    assert all(torch.isfinite(p.grad).all() for p in shared.parameters())


@pytest.mark.parametrize("inner", ["nash-mtl", "uw"])
def test_a_regularized_balancer_scales_its_penalty_and_passes_the_scale_on(inner):
    def grads(grad_scale):
        torch.manual_seed(0)
        shared = nn.Linear(3, 4)
        heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(2)])
        h = torch.tanh(shared(torch.randn(8, 3)))
        losses = {f"t{k}": (k + 1) * head(h).pow(2).mean() for k, head in enumerate(heads)}
        balancer = pt.balancing.Regularized(
            inner, penalty=lambda: shared.weight.pow(2).sum(), weight=0.1)
        balancer.prepare(list(losses))
        result = balancer.backward(losses, shared_params=shared.parameters(),
                                   grad_scale=grad_scale)
        return result.weights, shared.weight.grad.clone()

    w, g = grads(None)
    w_s, g_s = grads(SCALE)
    assert w == pytest.approx(w_s, rel=1e-6)
    assert torch.allclose(g * SCALE, g_s, rtol=1e-5)


@pytest.mark.parametrize("init_epochs", [0, 2])
def test_pareto_mtl_with_its_rays_gives_the_unscaled_update(init_epochs):
    from polytask.pareto import ParetoMTL

    rays = torch.tensor([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6]])
    w_plain, p_plain = run("pmtl", None, settings={"prefs": rays, "index": 1,
                                                  "init_epochs": init_epochs})
    w_scaled, p_scaled = run("pmtl", SCALE, settings={"prefs": rays, "index": 1,
                                                     "init_epochs": init_epochs})
    assert isinstance(pt.balancing.get("pmtl", prefs=rays, index=1), ParetoMTL)
    for a, b in zip(w_plain, w_scaled):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7)
    for a, b in zip(p_plain, p_scaled):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
