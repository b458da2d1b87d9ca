"""Every gradient a method computes goes through the engine (polytask.balancing.engine):
no method calls torch.autograd or ``Tensor.backward`` itself, so each gets the engine's
paths, memory limit, loss scaling, cross-rank reduction and accumulation."""

import ast
import inspect
import os
from pathlib import Path

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.training import MultiTaskDataset, batch_loader

SRC = Path(pt.__file__).parent
ENGINE = SRC / "balancing" / "engine.py"
#: where registered methods live (balancing methods and the pareto scalarizations)
METHOD_DIRS = [SRC / "balancing", SRC / "pareto"]
#: the receivers whose ``.backward(...)`` is a balancer's or the engine's, not autograd's
BALANCER_CALLS = {"scaling", "engine", "self.inner", "inner", "self.balancer", "balancer"}
METHODS = [
    m
    for m in pt.balancing.available()
    if m != "regularized" and not getattr(pt.balancing.method_class(m), "requires", ())
]


def autograd_calls(path: Path) -> list[str]:
    """``torch.autograd.*`` / ``torch.func`` gradient calls and ``x.backward()`` calls
    on anything but a balancer, as ``file:line code``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        target = ast.unparse(node.func.value)
        name = node.func.attr
        bad = (
            target in ("torch.autograd", "autograd")
            or (target in ("torch.func", "func") and name in ("grad", "vjp", "jacrev", "jacfwd"))
            or (name == "backward" and target not in BALANCER_CALLS)
        )
        if bad:
            where = path.relative_to(SRC) if path.is_relative_to(SRC) else path.name
            found.append(f"{where}:{node.lineno} {ast.unparse(node.func)}")
    return found


def test_no_method_module_calls_autograd_outside_the_engine():
    files = [f for d in METHOD_DIRS for f in d.rglob("*.py") if f != ENGINE]
    offending = [call for f in files for call in autograd_calls(f)]
    assert not offending, offending


def test_the_static_check_sees_a_direct_call(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\n(g,) = torch.autograd.grad(y, x)\nloss.backward()\n")
    calls = autograd_calls(bad)
    assert len(calls) == 2, calls


@pytest.fixture
def autograd_callers(monkeypatch):
    """Record, for every torch.autograd.grad / backward call, the first calling frame
    outside torch."""
    callers: list[str] = []
    torch_dir = os.path.dirname(torch.__file__)

    def caller() -> str:
        for frame in inspect.stack()[2:]:
            if not frame.filename.startswith(torch_dir):
                return frame.filename
        return "?"

    grad, backward = torch.autograd.grad, torch.autograd.backward

    def spy_grad(*args, **kwargs):
        callers.append(caller())
        return grad(*args, **kwargs)

    def spy_backward(*args, **kwargs):
        callers.append(caller())
        return backward(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy_grad)
    monkeypatch.setattr(torch.autograd, "backward", spy_backward)
    return callers


@pytest.mark.parametrize("method", METHODS)
def test_every_autograd_call_of_a_method_step_comes_from_the_engine(method, autograd_callers):
    torch.manual_seed(0)
    tasks = {t.name: t for t in [pt.Binary("a"), pt.Regression("b")]}
    model = pt.HardSharing(nn.Sequential(nn.Linear(4, 6), nn.Tanh()), tasks, encoder_out_features=6)
    x = torch.randn(16, 4)
    y = {"a": (x[:, 0] > 0).float(), "b": x[:, 1].clone()}
    balancer = pt.balancing.get(method)
    balancer.prepare(list(tasks))
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.extra_parameters()], lr=0.1)
    balancer.attach(
        model=model,
        optimizer=optimizer,
        tasks=tasks,
        loader=batch_loader(MultiTaskDataset(x, y), batch_size=8),
    )
    for _ in range(2):
        out = model(x)
        losses = pt.tasks.compute_losses(tasks, out, y)
        optimizer.zero_grad()
        balancer.backward(
            losses,
            shared_params=model.shared_parameters(),
            representation=model.shared_representation,
        )
        optimizer.step()
        with torch.no_grad():
            balancer.on_step_end(pt.tasks.compute_losses(tasks, model(x), y))
    assert autograd_callers, method
    outside = sorted({c for c in autograd_callers if c != str(ENGINE)})
    assert not outside, (method, outside)
