"""Gradient aggregation across datasets: a grouped step gives the update of the tasks'
gradients taken each on its own dataset at the same parameters (independent reference:
one separate forward per dataset, the Jacobian by hand, the aggregator's pure rule)."""

import copy

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.balancing import get as get_balancer
from polytask.multidataset import MultiDatasetLoader, MultiDatasetModel
from polytask.training import MultiTaskDataset, Trainer

TASKS = [pt.Multiclass("a", num_classes=3), pt.Regression("b"), pt.Binary("c")]


def datasets(dims=(5, 5, 5)):
    g = torch.Generator().manual_seed(0)
    return {
        "a": MultiTaskDataset(torch.randn(40, dims[0], generator=g),
                              {"a": torch.randint(0, 3, (40,), generator=g)}),
        "b": MultiTaskDataset(torch.randn(30, dims[1], generator=g),
                              {"b": torch.randn(30, generator=g)}),
        "c": MultiTaskDataset(torch.randn(20, dims[2], generator=g),
                              {"c": torch.randint(0, 2, (20,), generator=g).float()}),
    }


def reference_direction(model, method, batch_parts):
    """Each task's gradient of the shared parameters from its own dataset's batch."""
    shared = list(model.shared_parameters())
    rows = []
    for task in TASKS:
        x, y = batch_parts[task.name]
        out = model(x)[task.name]
        grads = torch.autograd.grad(task.loss(out, y), shared)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    jacobian = torch.stack(rows)
    return get_balancer(method).aggregate(jacobian)


def split_parts(loader, inputs, targets, masks):
    parts = {}
    for task in TASKS:
        rows = masks[task.name]
        x = inputs[task.name] if isinstance(inputs, dict) else inputs[rows]
        parts[task.name] = (x, targets[task.name][rows])
    return parts


@pytest.mark.parametrize("method", ["mgda", "upgrad", "imtl-g", "cagrad"])
def test_grouped_step_equals_per_dataset_gradients(method):
    data = datasets()
    torch.manual_seed(0)
    loader = MultiDatasetLoader(data, 8, mode="grouped", tasks=TASKS)
    torch.manual_seed(0)
    model = pt.HardSharing(nn.Sequential(nn.Linear(5, 6), nn.Tanh()), TASKS,
                           encoder_out_features=6)
    reference_model = copy.deepcopy(model)
    trainer = Trainer(model, TASKS, method, lambda p: torch.optim.SGD(p, lr=0.0),
                      progress=False, device="cpu")
    batch = next(iter(loader))
    trainer.train_step(batch)
    got = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    expected = reference_direction(reference_model, method, split_parts(loader, *batch))
    assert torch.allclose(got, expected.to(got.dtype), atol=1e-5, rtol=1e-4)


def test_grouped_step_with_stems_equals_per_dataset_gradients():
    data = datasets(dims=(5, 7, 3))
    loader = MultiDatasetLoader(data, 8, mode="grouped", tasks=TASKS)
    assert loader.inputs_mode == "by_dataset"
    torch.manual_seed(0)
    trunk = pt.HardSharing(nn.Sequential(nn.Linear(4, 6), nn.Tanh()), TASKS,
                           encoder_out_features=6)
    stems = {"a": nn.Linear(5, 4), "b": nn.Linear(7, 4), "c": nn.Linear(3, 4)}
    model = MultiDatasetModel(trunk, stems, loader.tasks_of)
    reference_model = copy.deepcopy(model)
    trainer = Trainer(model, TASKS, "upgrad", lambda p: torch.optim.SGD(p, lr=0.0),
                      progress=False, device="cpu")
    batch = next(iter(loader))
    trainer.train_step(batch)
    got = torch.cat([p.grad.reshape(-1) for p in model.shared_parameters()])
    parts = {t.name: ({t.name: batch[0][t.name]}, batch[1][t.name][batch[2][t.name]])
             for t in TASKS}
    expected = reference_direction(reference_model, "upgrad", parts)
    assert torch.allclose(got, expected.to(got.dtype), atol=1e-5, rtol=1e-4)
    # a stem receives the gradient of its own dataset's task only: raw or weighted, as
    # the method's task_gradients says (UPGrad: raw, as the authors' code)
    x, y = parts["b"]
    loss_b = TASKS[1].loss(reference_model(x)["b"], y)
    w_b = trainer.balancer._last_weights[1]
    if trainer.balancer.task_gradients == "raw":
        w_b = torch.ones_like(w_b)
    (g_ref,) = torch.autograd.grad(loss_b, [reference_model.stems["b"].weight])
    assert torch.allclose(model.stems["b"].weight.grad, w_b.to(g_ref.dtype) * g_ref, atol=1e-5)
