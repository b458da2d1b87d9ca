"""Gradient accumulation (polytask.balancing.accumulation): M micro-batches give the
update of the M× batch, for every registered method, in a plain loop."""

import math

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.balancing import GradientAccumulator, whole_batch_losses
from polytask.balancing.accumulation import _needs_representation
from polytask.errors import PolytaskError
from polytask.training import MultiTaskDataset, batch_loader

METHODS = [
    m
    for m in pt.balancing.available()
    if m != "regularized" and not getattr(pt.balancing.method_class(m), "requires", ())
]
BATCH, MICRO = 32, 4


@pytest.fixture(autouse=True)
def float64():
    """Every run in float64 (balancer state built lazily included)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def data(n=BATCH, seed=0, uneven=True):
    """Task b is labelled unevenly: none in the second micro-batch, 1 of 8 in the
    third, all of the fourth."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g, dtype=torch.float64)
    b = (x[:, 1] > 0).double()
    if uneven:
        size = n // MICRO
        b[:size:2] = math.nan
        b[size : 2 * size] = math.nan
        b[2 * size + 1 : 3 * size] = math.nan
    y = {"a": (x[:, 0] > 0).double(), "b": b, "c": x[:, 2] * x[:, 3]}
    return x, y


def needs_graphs(balancer) -> bool:
    reads, weighted = _needs_representation(balancer)
    return reads and not weighted


def run(method: str, micro: int, steps: int = 3, settings=None):
    """A plain loop on batches of 32 (micro = 1) or 32/micro accumulated ``micro``
    times; returns the parameters after ``steps`` optimizer steps and the weights."""
    x, y = data()
    torch.manual_seed(0)
    tasks = {t.name: t for t in [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]}
    model = pt.HardSharing(
        nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8
    ).double()
    balancer = pt.balancing.get(method, **(settings or {}))
    balancer.prepare(list(tasks))
    optimizer = torch.optim.SGD([*model.parameters(), *balancer.extra_parameters()], lr=0.1)
    dataset = MultiTaskDataset(x, y)
    balancer.attach(
        model=model,
        optimizer=optimizer,
        tasks=tasks,
        loader=batch_loader(dataset, batch_size=BATCH),
    )
    acc = GradientAccumulator(
        balancer, shared_params=model.shared_parameters(), keep_graphs=needs_graphs(balancer)
    )
    batches = list(batch_loader(dataset, batch_size=BATCH // micro))
    weights = []
    for _ in range(steps):
        optimizer.zero_grad()
        micro_losses, counts = [], []
        for xb, targets in batches:
            out = model(xb)
            losses = pt.tasks.compute_losses(tasks, out, targets)
            count = {n: t.loss_count(out[n], targets[n]) for n, t in tasks.items()}
            if micro == 1:
                result = balancer.backward(
                    losses,
                    shared_params=model.shared_parameters(),
                    representation=model.shared_representation,
                )
            else:
                acc.add(losses, counts=count, representation=model.shared_representation)
            micro_losses.append({n: v.detach() for n, v in losses.items()})
            counts.append(count)
        if micro > 1:
            result = acc.backward()
        weights.append(result.weights)
        optimizer.step()
        if balancer.needs_losses_after_step:
            with torch.no_grad():
                after = [pt.tasks.compute_losses(tasks, model(xb), t) for xb, t in batches]
            balancer.on_step_end(whole_batch_losses(after, counts))
    return weights, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_accumulating_four_micro_batches_equals_the_large_batch(method):
    w_large, p_large = run(method, 1)
    w_acc, p_acc = run(method, MICRO)
    for a, b in zip(w_large, w_acc):
        for name in a:
            assert math.isclose(a[name], b[name], rel_tol=1e-6, abs_tol=1e-9), (method, a, b)
    for a, b in zip(p_large, p_acc):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8), (method, (a - b).abs().max())


@pytest.mark.parametrize("method", ["mgda", "upgrad", "nash-mtl"])
def test_gramian_path_accumulates_the_summed_jacobian(method):
    """On the Gramian path (Jacobian-vector products), too."""
    _, p_large = run(method, 1, settings={"path": "gramian"})
    _, p_acc = run(method, MICRO, settings={"path": "gramian"})
    for a, b in zip(p_large, p_acc):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8), method


def test_summing_micro_batch_gramians_would_differ():
    """The reason for the mechanism: stepping MGDA per micro-batch (its own Gramian
    each time, gradients summed) is not the large batch's update."""
    _, p_large = run("mgda", 1, steps=1)
    x, y = data()
    torch.manual_seed(0)
    tasks = {t.name: t for t in [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]}
    model = pt.HardSharing(
        nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8
    ).double()
    balancer = pt.balancing.get("mgda")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for xb, targets in batch_loader(MultiTaskDataset(x, y), batch_size=BATCH // MICRO):
        losses = {
            n: v / MICRO for n, v in pt.tasks.compute_losses(tasks, model(xb), targets).items()
        }
        balancer.backward(losses, shared_params=model.shared_parameters())
    optimizer.step()
    gap = max(float((a - b.detach()).abs().max()) for a, b in zip(p_large, model.parameters()))
    assert gap > 1e-4


def test_without_counts_uneven_labels_would_differ():
    """Equal micro-batch weights are not the large batch's mean when task b is
    labelled unevenly: the counts are what makes the mean exact."""
    _, p_large = run("ew", 1, steps=1)
    x, y = data()
    torch.manual_seed(0)
    tasks = {t.name: t for t in [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]}
    model = pt.HardSharing(nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    acc = GradientAccumulator(pt.balancing.get("ew"), shared_params=model.shared_parameters())
    for xb, targets in batch_loader(MultiTaskDataset(x, y), batch_size=BATCH // MICRO):
        acc.add(pt.tasks.compute_losses(tasks, model(xb), targets))
    acc.backward()
    optimizer.step()
    gap = max(float((a - b.detach()).abs().max()) for a, b in zip(p_large, model.parameters()))
    assert gap > 1e-4


def test_whole_batch_losses_are_count_weighted():
    micro = [{"a": torch.tensor(1.0)}, {"a": torch.tensor(0.0)}, {"a": torch.tensor(4.0)}]
    counts = [{"a": 3}, {"a": 0}, {"a": 1}]
    assert float(whole_batch_losses(micro, counts)["a"]) == pytest.approx(7 / 4)
    assert float(whole_batch_losses(micro)["a"]) == pytest.approx(5 / 3)


def test_a_task_labelled_in_no_micro_batch_is_dead():
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(3))
    acc = GradientAccumulator(pt.balancing.get("upgrad"), shared_params=[w])
    for _ in range(2):
        acc.add({"a": (w**2).sum(), "b": (w * 0).sum()}, counts={"a": 2, "b": 0})
    result = acc.backward()
    assert result.weights["b"] == 0.0
    assert torch.allclose(w.grad, 2 * w.detach(), atol=1e-6)


def test_a_direction_on_the_representation_needs_the_graphs():
    torch.manual_seed(0)
    enc = nn.Linear(3, 4)
    rep = enc(torch.randn(5, 3))
    acc = GradientAccumulator(pt.balancing.get("graddrop"), shared_params=list(enc.parameters()))
    with pytest.raises(PolytaskError, match="GradDrop.*path='jacobian'.*keep_graphs=True"):
        acc.add({"a": rep.sum(), "b": rep.square().sum()}, representation=rep)


def test_backward_before_add_and_changed_tasks_raise():
    w = nn.Parameter(torch.ones(2))
    acc = GradientAccumulator(pt.balancing.get("ew"), shared_params=[w])
    with pytest.raises(PolytaskError, match="before any add"):
        acc.backward()
    acc.add({"a": w.sum(), "b": w.prod()})
    with pytest.raises(PolytaskError, match="tasks differ"):
        acc.add({"a": w.sum()})
    with pytest.raises(PolytaskError, match="counts lacks task"):
        acc.add({"a": w.sum(), "b": w.prod()}, counts={"a": 1})


def test_fp16_grad_scale_gives_the_unscaled_accumulated_update():
    def grads(scale):
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(4))
        acc = GradientAccumulator(pt.balancing.get("nash-mtl"), shared_params=[w])
        for _ in range(3):
            x = torch.randn(4)
            acc.add({"a": (w * x).sum() ** 2, "b": (w - x).square().sum()}, grad_scale=scale)
        acc.backward(grad_scale=scale)
        return w.grad / (scale or 1.0)

    assert torch.allclose(grads(None), grads(2.0**10), rtol=1e-5, atol=1e-7)


def test_holding_the_jacobian_beyond_the_gramian_paths_limit_warns():
    w = nn.Parameter(torch.ones(64))
    acc = GradientAccumulator(
        pt.balancing.get("upgrad", jacobian_memory_limit=100), shared_params=[w]
    )
    with pytest.warns(RuntimeWarning, match="UPGrad.*jacobian_memory_limit"):
        acc.add({"a": w.sum(), "b": w.square().sum()})


def test_the_readme_plain_loop_example_runs_and_equals_the_large_batch():
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Gradient accumulation") :]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    x, y = data()
    grads = []
    for micro in (False, True):
        torch.manual_seed(0)
        tasks = {t.name: t for t in [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]}
        model = pt.HardSharing(
            nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8
        )
        balancer = pt.balancing.get("upgrad")
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        if micro:
            batches = list(batch_loader(MultiTaskDataset(x, y), batch_size=BATCH // MICRO))
            scope = {
                "pt": pt,
                "balancer": balancer,
                "model": model,
                "tasks": tasks,
                "micro_batches": batches,
                "optimizer": optimizer,
            }
            exec(code, scope)
        else:
            losses = pt.tasks.compute_losses(tasks, model(x), y)
            balancer.backward(losses, shared_params=model.shared_parameters())
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def test_a_regularized_method_accumulates_its_inner_rule_and_adds_the_penalty_once():
    def grads(micro):
        torch.manual_seed(0)
        w = nn.Parameter(torch.randn(5))
        balancer = pt.balancing.Regularized("upgrad", penalty=lambda: w.square().sum(), weight=0.5)
        x = torch.randn(8, 5)
        if micro:
            acc = GradientAccumulator(balancer, shared_params=[w])
            for xb in x.chunk(4):
                acc.add({"a": (xb @ w).square().mean(), "b": (xb @ w - 1).abs().mean()})
            acc.backward()
        else:
            balancer.backward(
                {"a": (x @ w).square().mean(), "b": (x @ w - 1).abs().mean()}, shared_params=[w]
            )
        return w.grad

    assert torch.allclose(grads(False), grads(True), rtol=1e-6, atol=1e-9)
