"""Defining rules of the weightings with learned parameters: UW, GradNorm, IMTL-L, FAMO."""

import warnings

import pytest
import torch
from torch import nn

from polytask.balancing import get
from polytask.balancing.weighting import UncertaintyWeighting
from polytask.errors import PolytaskError
from polytask.tasks import Binary, Regression


def test_uw_variance_converges_to_noise_scale_on_fixed_noise_regression():
    torch.manual_seed(0)
    n, noise = 1024, {"a": 0.5, "b": 2.0}
    x = torch.randn(n, 3)
    w_true = {"a": torch.tensor([1.0, -2.0, 0.5]), "b": torch.tensor([0.3, 1.0, -1.0])}
    y = {t: x @ w_true[t] + s * torch.randn(n) for t, s in noise.items()}
    heads = nn.ModuleDict({t: nn.Linear(3, 1) for t in noise})
    uw = UncertaintyWeighting(tasks=list(noise))
    opt = torch.optim.Adam(list(heads.parameters()) + uw.extra_parameters(), lr=0.05)
    for _ in range(400):
        opt.zero_grad()
        losses = {t: ((heads[t](x).squeeze(1) - y[t]) ** 2).mean() for t in noise}
        result = uw.backward(losses)
        opt.step()
    sigma2 = uw.log_vars.detach().exp()
    final = torch.stack([losses[t].detach() for t in noise])
    # at the optimum sigma^2 = L (regression form), and L = the noise variance
    assert torch.allclose(sigma2, final, rtol=0.05)
    assert sigma2.tolist() == pytest.approx([0.25, 4.0], rel=0.15)
    assert result.weights["a"] == pytest.approx(0.5 / sigma2[0].item(), rel=1e-5)
    assert result.weights["a"] > result.weights["b"]  # the noisier task weighs less


def test_uw_classification_form_and_inferred_forms():
    uw = UncertaintyWeighting(tasks=[Regression("r"), Binary("c")], lr=0.05)
    assert uw.forms(["r", "c"]) == ["regression", "classification"]
    assert uw.extra_parameters() == []  # internal optimizer: the user steps nothing
    for _ in range(1500):
        r = uw.backward({"r": torch.tensor(0.3), "c": torch.tensor(0.3)})
    # optimum: sigma^2 = L (regression), 2L (classification: L/sigma^2 + log sigma)
    assert uw.log_vars.exp().tolist() == pytest.approx([0.3, 0.6], rel=0.03)
    assert r.weights["c"] == pytest.approx(1 / 0.6, rel=0.03)


def test_uw_needs_tasks_before_optimizer():
    uw = get("uw")
    with pytest.raises(PolytaskError, match="prepare"):
        uw.extra_parameters()
    uw.prepare(["a", "b"])
    assert len(uw.extra_parameters()) == 1
    lazy = get("uw")
    with pytest.warns(RuntimeWarning, match="no optimizer holds them"):
        lazy.backward({"a": torch.tensor(1.0, requires_grad=True)})


def test_gradnorm_raises_weight_of_task_with_larger_relative_loss():
    shared = nn.Parameter(torch.zeros(1, 2))  # the last shared layer
    gn = get("gradnorm", alpha=1.5)

    def losses(a, b):  # equal gradient norms (1) on the shared layer
        return {"a": shared[0, 0] + a, "b": shared[0, 1] + b}

    r0 = gn.backward(losses(1.0, 1.0), shared_params=[shared])
    assert r0.weights == {"a": 1.0, "b": 1.0}
    shared.grad = None
    r1 = gn.backward(losses(0.9, 0.3), shared_params=[shared])  # a has trained slower
    assert shared.grad[0].tolist() == pytest.approx([r1.weights["a"], r1.weights["b"]])
    w = gn.task_weights.detach()
    assert w[0] > 1.0 > w[1]
    assert w.sum().item() == pytest.approx(2.0)  # renormalised to K
    assert r1.extras["grad_norm/a"] == pytest.approx(1.0)


def test_gradnorm_last_layer_choice():
    from polytask.balancing.weighting.gradnorm import last_layer

    enc = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 5))
    params = list(enc.parameters())
    assert last_layer(params) == params[2:]


def test_imtl_l_scaled_losses_reach_one():
    imtl_l = get("imtl-l", tasks=["a", "b"], lr=0.1)
    for _ in range(600):
        r = imtl_l.backward({"a": torch.tensor(0.1), "b": torch.tensor(10.0)})
    scaled = torch.tensor([r.weights["a"] * 0.1, r.weights["b"] * 10.0])
    assert scaled.tolist() == pytest.approx([1.0, 1.0], rel=0.02)


def test_famo_logits_move_to_task_whose_loss_fell_less():
    theta = nn.Parameter(torch.tensor([1.0, 1.0]))
    famo = get("famo", tasks=["a", "b"])
    r = famo.backward({"a": theta[0] * 2.0, "b": theta[1] * 4.0})
    # weights on the raw gradients: z/(c L), summing to 1 (z = 1/2 each)
    assert r.weights["a"] == pytest.approx(4 / 6, rel=1e-5)
    assert sum(r.weights.values()) == pytest.approx(1.0)
    assert theta.grad.tolist() == pytest.approx([2 * 4 / 6, 4 * 2 / 6], rel=1e-5)
    famo.on_step_end({"a": torch.tensor(1.0), "b": torch.tensor(3.9)})  # a halved, b barely
    z = torch.softmax(famo.logits.detach(), 0)
    assert z[1] > z[0]
    assert famo.extra_parameters() == []


def test_famo_without_on_step_end_uses_next_losses():
    famo = get("famo")
    famo.backward({"a": torch.tensor(2.0), "b": torch.tensor(2.0)})
    famo.backward({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    z = torch.softmax(famo.logits.detach(), 0)
    assert z[1] > z[0]


def test_stateful_balancer_checkpoint_roundtrip():
    famo = get("famo", tasks=["a", "b"])
    famo.backward({"a": torch.tensor(2.0), "b": torch.tensor(2.0)})
    famo.backward({"a": torch.tensor(1.0), "b": torch.tensor(2.0)})
    state = famo.state_dict()
    other = get("famo")  # not prepared: the checkpoint says for which tasks
    other.load_state_dict(state)
    assert torch.equal(other.logits, famo.logits)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = famo.backward({"a": torch.tensor(0.5), "b": torch.tensor(2.0)}).weights
        b = other.backward({"a": torch.tensor(0.5), "b": torch.tensor(2.0)}).weights
    assert a == pytest.approx(b)


def test_uw_infers_forms_from_the_trainer_tasks():
    from polytask import balancing
    from polytask.tasks import Binary, Regression

    uw = balancing.get("uw")
    uw.attach(tasks={"r": Regression("r"), "b": Binary("b")})
    assert uw.forms(["r", "b"]) == ["regression", "classification"]
