"""Label conventions and batch keys: ±1 binary labels, misspelt mask keys."""

import math

import pytest
import torch

import polytask as pt
from polytask.errors import LabelRangeError, TargetMissingError, UnknownNameError


def test_plus_minus_one_labels_keep_their_negatives_when_declared():
    logits = torch.tensor([0.3, -1.2, 2.0, 0.1])
    pm = torch.tensor([1.0, -1.0, -1.0, math.nan])
    zero_one = torch.tensor([1.0, 0.0, 0.0, math.nan])
    task = pt.Binary("y", negative_label=-1)
    assert task.loss(logits, pm) == pytest.approx(float(pt.Binary("y").loss(logits, zero_one)))
    metrics = task.metrics()
    task.update_metrics(metrics, logits, pm)
    assert metrics["accuracy"].compute() == pytest.approx(2 / 3)
    with pytest.raises(LabelRangeError, match="outside \\[-1, 1\\]"):
        task.loss(logits, torch.tensor([1.0, 2.0, -1.0, 1.0]))
    ml = pt.MultiLabel("t", num_labels=2, negative_label=-1)
    assert ml.loss(logits.reshape(2, 2), pm.reshape(2, 2)) == pytest.approx(
        float(pt.MultiLabel("t", num_labels=2).loss(logits.reshape(2, 2),
                                                     zero_one.reshape(2, 2))))


def test_plus_minus_one_labels_without_the_declaration_warn():
    with pytest.warns(RuntimeWarning, match="negative_label=-1"):
        pt.Binary("click").loss(torch.zeros(4), torch.tensor([1.0, -1.0, 1.0, -1.0]))


def test_a_misspelt_mask_key_raises_naming_it():
    tasks = [pt.Binary("click"), pt.Regression("dwell")]
    out = {"click": torch.zeros(4, 1), "dwell": torch.zeros(4, 1)}
    targets = {"click": torch.ones(4), "dwell": torch.ones(4)}
    with pytest.raises(UnknownNameError, match="'clik'.*did you mean 'click'"):
        pt.tasks.compute_losses(tasks, out, targets, {"clik": torch.zeros(4, dtype=torch.bool)})
    with pytest.raises(TargetMissingError, match="no target for task 'dwell'"):
        pt.tasks.compute_losses(tasks, out, {"click": torch.ones(4)})
    losses = pt.tasks.compute_losses(tasks, out, targets,
                                     {"click": torch.tensor([True, False, False, False])})
    assert set(losses) == {"click", "dwell"}


def test_the_trainer_rejects_a_misspelt_mask_key():
    tasks = [pt.Binary("click")]
    model = pt.HardSharing(torch.nn.Linear(3, 4), tasks, encoder_out_features=4)
    trainer = pt.Trainer(model, tasks, progress=False)
    batch = (torch.randn(4, 3), {"click": torch.ones(4)}, {"clik": torch.ones(4).bool()})
    with pytest.raises(UnknownNameError, match="mask key"):
        trainer.fit([batch], epochs=1)
