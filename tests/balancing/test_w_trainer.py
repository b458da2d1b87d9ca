"""Every loss weighting trains in the Trainer, logs its weights and resumes."""

import csv

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.balancing import get
from polytask.tasks import Binary, Regression
from polytask.training import MultiTaskDataset, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b")]
METHODS = ["uw", "gradnorm", "dwa", "rlw", "gls", "imtl-l", "imtl", "famo", "db-mtl", "stch",
           "excess-mtl", "auto-lambda", "scalarization"]


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
    assert all(w == w for w in weights)  # finite numbers, logged each step
    if method in ("uw", "gradnorm", "rlw", "famo", "gls", "imtl-l", "auto-lambda"):
        assert len(set(weights)) > 1  # adaptive methods change their weights


def test_uw_parameters_go_to_the_users_optimizer():
    t = make_trainer("uw")
    held = {id(p) for g in t.optimizer.param_groups for p in g["params"]}
    assert id(t.balancer.log_vars) in held
    t.fit(batch_loader(data(), 32, shuffle=True), epochs=1)
    assert t.balancer.log_vars.detach().abs().sum() > 0


def test_resume_restores_weighting_state(tmp_path):
    a = make_trainer("dwa", tmp_path / "a")
    a.fit(batch_loader(data(), 32, shuffle=True), epochs=3)
    b = make_trainer("dwa", tmp_path / "a")
    b.fit(batch_loader(data(), 32, shuffle=True), epochs=3, resume=True)
    assert torch.allclose(b.balancer._current, a.balancer._current)
