"""Shared checks for architecture tests (imported by tests/models/test_*.py)."""

from __future__ import annotations

import torch
from torch import nn

from polytask.tasks import Binary, Multiclass, Regression


def tasks3():
    return [Regression("r"), Binary("b"), Multiclass("m", num_classes=3)]


def mlp(d_in: int = 6, d_out: int = 8) -> nn.Module:
    enc = nn.Sequential(nn.Linear(d_in, d_out), nn.ReLU())
    enc.out_features = d_out
    return enc


def mlp_stages(d_in: int = 6, widths=(8, 8, 8)) -> list[nn.Module]:
    stages = []
    for w in widths:
        stages.append(nn.Sequential(nn.Linear(d_in, w), nn.ReLU()))
        d_in = w
    return stages


def cnn_stages() -> list[nn.Module]:
    """Two conv stages (4 and 6 channels, 8x8 -> 4x4 -> 2x2) and a dense stage."""
    return [
        nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(24, 10), nn.ReLU()),
    ]


def check_split(model, x: torch.Tensor, require_reach: bool = True) -> None:
    """Every parameter is shared or one task's, never both; and a task's own
    parameters are reached by its output only (never by another task's)."""
    params = [p for p in model.parameters() if p.requires_grad]
    shared = list(model.shared_parameters())
    own = {k: list(model.task_parameters(k)) for k in model.task_names}
    listed = [id(p) for p in shared] + [id(p) for k in own for p in own[k]]
    assert len(listed) == len(set(listed)), "a parameter is listed twice"
    assert set(listed) == {id(p) for p in params}, "the split does not cover every parameter"
    out = model(x)
    reached = {}
    for k in model.task_names:
        grads = torch.autograd.grad(
            out[k].float().sum(), params, retain_graph=True, allow_unused=True
        )
        reached[k] = {id(p) for p, g in zip(params, grads) if g is not None}
    for k, ps in own.items():
        for j in model.task_names:
            if j != k:
                leaked = [p.shape for p in ps if id(p) in reached[j]]
                assert not leaked, f"parameters of task {k} reached by task {j}: {leaked}"
        if require_reach:
            assert {id(p) for p in ps} <= reached[k], f"task {k} owns unreached parameters"


def assert_independent_columns(model, x: torch.Tensor) -> None:
    """Each task's output equals its own column run alone (no mixing across columns)."""
    out = model(x)
    for i, name in enumerate(model.task_names):
        h = x
        for stage in model.columns[i]:
            h = stage(h)
        assert torch.allclose(out[name], model.heads[name](h), atol=1e-6), name
