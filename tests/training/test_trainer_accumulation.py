"""Trainer(accumulate_grad_batches=M): M micro-batches per optimizer step give the
training of the M× batch, for every registered method."""

import math

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.balancing import GradientAccumulator
from polytask.balancing.weighting.autolambda import val_loss_from_loader
from polytask.errors import PolytaskError
from polytask.training import MultiTaskDataset, Trainer, batch_loader

METHODS = [
    m
    for m in pt.balancing.available()
    if m != "regularized" and not getattr(pt.balancing.method_class(m), "requires", ())
]
N, BATCH, MICRO = 64, 32, 4
TASKS = [pt.Binary("a"), pt.Binary("b"), pt.Regression("c")]


@pytest.fixture(autouse=True)
def float64():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def dataset():
    """Task b is unlabelled in a whole micro-batch and sparse in another."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 6, generator=g)
    b = (x[:, 1] > 0).double()
    b[8:16] = math.nan
    b[16:23] = math.nan
    b[40:44] = math.nan
    y = {"a": (x[:, 0] > 0).double(), "b": b, "c": x[:, 2] * x[:, 3]}
    return MultiTaskDataset(x, y)


def spec(method: str) -> str:
    """The method as the Trainer runs it accumulated: a rule that computes its
    direction on the representation runs on the Jacobian (see the error test)."""
    acc = GradientAccumulator(pt.balancing.get(method))
    if acc.reads_representation and not acc.weighted_on_representation:
        return f"{method}:path=jacobian"
    return method


def fit(method: str, micro: int, epochs: int = 2):
    data = dataset()
    torch.manual_seed(0)
    tasks = {t.name: t for t in TASKS}
    model = pt.HardSharing(nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8)
    balancer = spec(method)
    if method == "auto-lambda":  # its validation batches: the same in both runs
        balancer = pt.balancing.get(
            method, val_loss=val_loss_from_loader(batch_loader(data, BATCH), tasks)
        )
    trainer = Trainer(
        model,
        TASKS,
        balancer,
        lambda groups: torch.optim.SGD(groups, lr=0.1),
        device="cpu",
        seed=0,
        progress=False,
        accumulate_grad_batches=micro,
    )
    trainer.fit(batch_loader(data, BATCH // micro), epochs=epochs)
    return trainer, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("method", METHODS)
def test_trainer_accumulation_equals_the_large_batch(method):
    large, p_large = fit(method, 1)
    acc, p_acc = fit(method, MICRO)
    assert acc.global_step == large.global_step == 2 * N // BATCH
    for a, b in zip(p_large, p_acc):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-8), (method, (a - b).abs().max())
    logs_large, logs_acc = large.history[-1]["train"], acc.history[-1]["train"]
    for task in ("a", "b", "c"):
        key = f"loss/{task}"
        assert logs_large[key] == pytest.approx(logs_acc[key], rel=1e-6), key


def test_a_direction_on_the_representation_is_refused_with_the_fix():
    torch.manual_seed(0)
    tasks = {t.name: t for t in TASKS}
    model = pt.HardSharing(nn.Linear(6, 8), tasks, encoder_out_features=8)
    with pytest.raises(PolytaskError, match="GradDrop.*path='jacobian'"):
        Trainer(model, TASKS, "graddrop", device="cpu", accumulate_grad_batches=2)


def test_accumulate_grad_batches_is_checked():
    torch.manual_seed(0)
    tasks = {t.name: t for t in TASKS}
    model = pt.HardSharing(nn.Linear(6, 8), tasks, encoder_out_features=8)
    with pytest.raises(PolytaskError, match="accumulate_grad_batches"):
        Trainer(model, TASKS, "ew", device="cpu", accumulate_grad_batches=0)


def test_a_short_last_group_is_stepped():
    data = dataset()
    torch.manual_seed(0)
    tasks = {t.name: t for t in TASKS}
    model = pt.HardSharing(nn.Linear(6, 8), tasks, encoder_out_features=8)
    trainer = Trainer(
        model, TASKS, "upgrad", device="cpu", progress=False, accumulate_grad_batches=3
    )
    trainer.fit(batch_loader(data, 8), epochs=1)  # 8 micro-batches: 3 + 3 + 2
    assert trainer.global_step == 3


@pytest.mark.parametrize("method", ["mgda", "famo", "upgrad"])
def test_fp16_accumulation_is_within_float16_rounding_of_the_large_batch(method):
    """fp16 autocast with the GradScaler: the per-task rows are unscaled before they
    are summed and each micro-batch's backward is seeded at the large batch's
    magnitude (``micro_batches``), so no step is skipped that the large batch takes."""
    torch.set_default_dtype(torch.float32)
    runs = []
    for micro in (1, MICRO):
        data = dataset()
        data.inputs = data.inputs.float()
        data.targets = {k: v.float() for k, v in data.targets.items()}
        torch.manual_seed(0)
        tasks = {t.name: t for t in TASKS}
        model = pt.HardSharing(
            nn.Sequential(nn.Linear(6, 8), nn.Tanh()), tasks, encoder_out_features=8
        )
        trainer = Trainer(
            model,
            TASKS,
            method,
            lambda groups: torch.optim.SGD(groups, lr=0.1),
            device="cpu",
            seed=0,
            progress=False,
            accumulate_grad_batches=micro,
            precision="fp16",
        )
        trainer.fit(batch_loader(data, BATCH // micro), epochs=2)
        runs.append(
            ([p.detach().clone() for p in model.parameters()], trainer.precision.scaler.get_scale())
        )
    (p_large, s_large), (p_acc, s_acc) = runs
    assert s_large == s_acc  # the same steps taken
    for a, b in zip(p_large, p_acc):
        assert torch.allclose(a, b, atol=1e-3), (method, (a - b).abs().max())
