"""Multi-task distillation (BAM): cached teachers, teacher annealing, soft targets."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import polytask as pt
from polytask.errors import LabelRangeError, PolytaskError
from polytask.multidataset import (
    Distillation,
    MultiDatasetLoader,
    PerDatasetLoader,
    SoftMulticlass,
    student_tasks,
    teacher_outputs,
)
from polytask.training import MultiTaskDataset, Trainer

TASKS = {"a": pt.Multiclass("a", num_classes=3), "b": pt.Regression("b"), "c": pt.Binary("c")}


def data():
    g = torch.Generator().manual_seed(0)
    a_labels = torch.randint(0, 3, (30,), generator=g)
    a_labels[0] = -1  # one missing label
    return {
        "a": MultiTaskDataset(torch.randn(30, 4, generator=g), {"a": a_labels}),
        "b": MultiTaskDataset(torch.randn(20, 4, generator=g), {"b": torch.randn(20, generator=g)}),
        "c": MultiTaskDataset(torch.randn(10, 4, generator=g),
                              {"c": torch.randint(0, 2, (10,), generator=g).float()}),
    }


def single_model(name):
    torch.manual_seed(1)
    return pt.HardSharing(nn.Linear(4, 5), {name: TASKS[name]}, encoder_out_features=5)


class Counting(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner, self.samples = inner, 0

    def forward(self, x):
        self.samples += x.shape[0]
        return self.inner(x)


def test_teachers_run_once_per_sample_and_outputs_are_predictions():
    d = data()
    loader = MultiDatasetLoader(d, 8)
    teachers = {n: Counting(single_model(n)) for n in TASKS}
    outputs = teacher_outputs(teachers, loader, TASKS, batch_size=7)
    assert {n: t.samples for n, t in teachers.items()} == {"a": 30, "b": 20, "c": 10}
    assert torch.allclose(outputs["a"].sum(1), torch.ones(30))  # probabilities
    with torch.no_grad():
        expected_b = teachers["b"].inner(d["b"].inputs)["b"]
    assert torch.allclose(outputs["b"], expected_b)
    assert outputs["c"].min() >= 0 and outputs["c"].max() <= 1


def test_teacher_annealing_goes_from_teacher_to_gold():
    d = data()
    outputs = teacher_outputs({n: single_model(n) for n in TASKS}, MultiDatasetLoader(d, 8),
                              TASKS)
    dist = Distillation(TASKS, outputs, epochs=2)
    loader = MultiDatasetLoader(d, 8, mode="grouped", epoch=5, distillation=dist)
    assert dist.total_steps == 10
    idx = torch.arange(30)
    gold = d["a"].targets["a"]
    first = dist.targets("a", gold, idx, 0)
    last = dist.targets("a", gold, idx, 9)
    assert torch.allclose(first[1:], outputs["a"][1:])  # λ = 0: the teacher
    assert torch.equal(last[1:], F.one_hot(gold[1:], 3).float())  # λ = 1: the gold labels
    assert torch.isnan(first[0]).all()  # a missing gold label stays missing
    mid = dist.targets("b", d["b"].targets["b"], torch.arange(20), 4)
    lam = 4 / 9
    assert torch.allclose(mid.reshape(-1), lam * d["b"].targets["b"] +
                          (1 - lam) * outputs["b"].reshape(-1))
    x, targets, masks = next(iter(loader))
    assert targets["a"].shape == (24, 3) and targets["a"].dtype == torch.float32


def test_soft_multiclass_matches_multiclass_on_one_hot_targets():
    task = SoftMulticlass("a", num_classes=3)
    logits = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    soft = F.one_hot(labels, 3).float()
    assert torch.allclose(task.loss(logits, soft), F.cross_entropy(logits, labels))
    assert torch.allclose(task.loss(logits, labels), F.cross_entropy(logits, labels))
    soft[0] = float("nan")
    assert torch.allclose(task.loss(logits, soft), F.cross_entropy(logits[1:], labels[1:]))
    with pytest.raises(LabelRangeError, match="not a probability vector"):
        task.loss(logits, torch.full((6, 3), 0.5))


def test_student_trains_with_the_trainer_and_is_evaluated_on_gold_labels():
    d = data()
    loader0 = MultiDatasetLoader(d, 8, mode="grouped")
    outputs = teacher_outputs({n: single_model(n) for n in TASKS}, loader0, TASKS)
    students = student_tasks(TASKS)
    assert isinstance(students["a"], SoftMulticlass) and students["b"] is TASKS["b"]
    dist = Distillation(TASKS, outputs, epochs=2)
    loader = MultiDatasetLoader(d, 8, mode="grouped", tasks=students, distillation=dist)
    torch.manual_seed(0)
    model = pt.HardSharing(nn.Linear(4, 5), students, encoder_out_features=5)
    trainer = Trainer(model, students, "ew", progress=False, seed=0)
    history = trainer.fit(loader, 2, val_loader=PerDatasetLoader(d, 16))
    assert 0 <= history[-1]["val"]["a/accuracy"] <= 1


def test_distillation_bad_input():
    d = data()
    loader = MultiDatasetLoader(d, 8)
    with pytest.raises(PolytaskError, match="teacher for task 'z'"):
        teacher_outputs({"z": single_model("a")}, loader, TASKS)
    outputs = {"a": torch.rand(29, 3)}
    with pytest.raises(PolytaskError, match="29 rows for the 30 samples of dataset 'a'"):
        MultiDatasetLoader(d, 8, distillation=Distillation(TASKS, outputs, epochs=1))
