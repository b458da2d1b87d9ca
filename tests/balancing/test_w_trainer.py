"""Every loss weighting trains in the Trainer, logs its weights and resumes."""

import csv
import math

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.balancing import LossWeighting, available, get, method_class
from polytask.tasks import Binary, Regression
from polytask.training import MultiTaskDataset, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b")]
METHODS = sorted(n for n in available() if isinstance(method_class(n), type)
                 and issubclass(method_class(n), LossWeighting))


def data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    targets = {"r": 2 * x[:, 0] + 0.1 * torch.randn(n, generator=g), "b": (x[:, 1] > 0).float()}
    return MultiTaskDataset(x, targets)


def make_trainer(method, log_dir=None):
    torch.manual_seed(0)
    model = HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS, encoder_out_features=8)
    kwargs = {"warmup_epochs": 1} if method == "stch" else {}
    opt = lambda groups: torch.optim.Adam(groups, lr=1e-2)  # noqa: E731
    return Trainer(model, TASKS, get(method, **kwargs), opt, log_dir=log_dir, seed=0,
                   progress=False)


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_logs_weights(method, tmp_path):
    t = make_trainer(method, tmp_path)
    before = t.evaluate(batch_loader(data(), 128))
    t.fit(batch_loader(data(), 32, shuffle=True), epochs=3)
    after = t.evaluate(batch_loader(data(), 128))
    assert after["r"]["loss"] < before["r"]["loss"]
    steps = list(csv.DictReader((tmp_path / "steps.csv").open()))
    assert len(steps) == 12
    weights = [float(s["weight/r"]) for s in steps]
    assert all(math.isfinite(w) for w in weights)  # finite numbers, logged each step
    if method in ("uw", "gradnorm", "rlw", "famo", "gls", "imtl-l", "auto-lambda"):
        assert len(set(weights)) > 1  # adaptive methods change their weights


def test_uw_parameters_go_to_the_users_optimizer():
    t = make_trainer("uw")
    held = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert id(t.balancer.log_vars) in held
    t.fit(batch_loader(data(), 32, shuffle=True), epochs=1)
    assert t.balancer.log_vars.detach().abs().sum() > 0


@pytest.mark.parametrize("method", ["dwa", "famo", "rlw"])
def test_resume_restores_weighting_state(method, tmp_path):
    full = make_trainer(method, tmp_path / "full")
    full.fit(batch_loader(data(), 32, shuffle=True), epochs=3)
    cut = make_trainer(method, tmp_path / "cut")
    cut.fit(batch_loader(data(), 32, shuffle=True), epochs=1)
    torch.manual_seed(999)  # disturb the global RNG: the resume must restore it
    resumed = make_trainer(method, tmp_path / "cut")
    resumed.fit(batch_loader(data(), 32, shuffle=True), epochs=3, resume=True)
    assert resumed.epochs_done == 3 and cut.epochs_done == 1  # it really trained on
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert full.history[-1]["train"]["weight/r"] == pytest.approx(
        resumed.history[-1]["train"]["weight/r"], rel=1e-5)


@pytest.mark.parametrize("method", ["rlw", "rgw", "pcgrad", "graddrop"])
def test_random_methods_follow_the_trainer_seed(method):
    def run():
        torch.manual_seed(12345)  # whatever the global state before fit
        model = HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS,
                            encoder_out_features=8)
        t = Trainer(model, TASKS, get(method), lambda g: torch.optim.Adam(g, lr=1e-2),
                    seed=0, progress=False)
        t.fit(batch_loader(data(), 32, shuffle=True), epochs=2)
        return [p.detach().clone() for p in t.model.parameters()]

    for a, b in zip(run(), run()):
        assert torch.equal(a, b)


def test_famo_under_the_trainer_uses_the_same_batchs_losses_after_the_step():
    """The paper's protocol: after ``optimizer.step()``, the same batch's losses."""
    torch.manual_seed(0)
    model = HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS, encoder_out_features=8)
    balancer = get("famo")
    t = Trainer(model, TASKS, balancer, lambda g: torch.optim.SGD(g, lr=0.1), seed=0,
                progress=False)
    seen = []
    original = balancer.update

    def spy(losses_after):
        seen.append((balancer._before.clone(), losses_after.clone()))
        original(losses_after)

    balancer.update = spy
    x, targets = data().inputs[:32], {k: v[:32] for k, v in data().targets.items()}
    batch = (x, targets)
    t.fit([batch], epochs=3)
    assert len(seen) == 3  # one update per step, right after it
    for before, after in seen:
        # recomputed on the same batch at the new parameters
        assert not torch.equal(before, after)
    with torch.no_grad():
        out = t.model(x)
        now = torch.stack([t.tasks[n].loss(out[n], targets[n]) for n in t.task_names])
    assert torch.allclose(seen[-1][1].to(now.dtype), now, rtol=1e-5)
