"""Per-task parameter groups."""

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.balancing import get
from polytask.errors import PolytaskError
from polytask.tasks import Binary, Regression
from polytask.training.optim import param_groups

TASKS = [Regression("r"), Binary("b")]


def model():
    return HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS, encoder_out_features=8)


def test_groups_follow_the_task_split_with_their_own_lr():
    m = model()
    uw = get("uw")
    groups = param_groups(m, uw, lr=1e-3, task_lr={"b": 1e-2},
                          task_options={"r": {"weight_decay": 0.1}}, balancer_lr=0.05)
    by_name = {g["name"]: g for g in groups}
    assert list(by_name) == ["shared", "task:r", "task:b", "balancer"]
    assert by_name["shared"]["lr"] == 1e-3 and by_name["task:b"]["lr"] == 1e-2
    assert by_name["task:r"]["weight_decay"] == 0.1 and by_name["task:r"]["lr"] == 1e-3
    assert by_name["balancer"]["params"] == [uw.log_vars] and by_name["balancer"]["lr"] == 0.05
    n = sum(len(g["params"]) for g in groups)
    assert n == len(list(m.parameters())) + 1  # every parameter exactly once
    opt = torch.optim.SGD(groups)
    # a step moves head b ten times as far as head r for the same gradient
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    uw.log_vars.grad = torch.ones_like(uw.log_vars)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt.step()
    moved_b = (before["heads.b.1.bias"] - m.heads["b"][1].bias).abs().item()
    moved_r = (before["heads.r.1.bias"] - m.heads["r"][1].bias).abs().item()
    assert moved_b == pytest.approx(1e-2, rel=1e-4)
    assert moved_r == pytest.approx(1e-3, rel=0.05)  # (plus its weight decay)


def test_unknown_task_and_internal_balancer():
    with pytest.raises(PolytaskError, match="unknown task"):
        param_groups(model(), task_lr={"nope": 1.0})
    groups = param_groups(model(), get("famo"))  # internal optimizer: no balancer group
    assert [g["name"] for g in groups] == ["shared", "task:r", "task:b"]
