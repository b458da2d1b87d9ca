"""Streaming metrics against hand-computed values and scikit-learn."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score

from polytask.metrics import AUC, F1, Accuracy, MeanAbsoluteError, RootMeanSquaredError


def test_mae_rmse_streaming_over_batches():
    mae, rmse = MeanAbsoluteError(), RootMeanSquaredError()
    for pred, target in [([1.0, 2.0], [0.0, 0.0]), ([3.0], [1.0])]:
        mae.update(torch.tensor(pred), torch.tensor(target))
        rmse.update(torch.tensor(pred), torch.tensor(target))
    assert mae.compute() == pytest.approx((1 + 2 + 2) / 3)
    assert rmse.compute() == pytest.approx(np.sqrt((1 + 4 + 4) / 3))


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=200).astype(float) / 4  # many ties
    labels = (rng.random(200) < 0.3).astype(float)
    auc = AUC()
    auc.update(torch.tensor(scores[:120]), torch.tensor(labels[:120]))
    auc.update(torch.tensor(scores[120:]), torch.tensor(labels[120:]))
    assert auc.compute() == pytest.approx(roc_auc_score(labels, scores))


def test_auc_single_class_is_nan():
    auc = AUC()
    auc.update(torch.tensor([0.1, 0.9]), torch.tensor([1.0, 1.0]))
    assert np.isnan(auc.compute())


def test_binary_f1_and_accuracy():
    pred = torch.tensor([0.9, 0.8, 0.2, 0.6, 0.1])
    target = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    f1, acc = F1(), Accuracy()
    f1.update(pred, target)
    acc.update(pred, target)
    assert f1.compute() == pytest.approx(f1_score(target.numpy(), (pred >= 0.5).numpy()))
    assert acc.compute() == pytest.approx(3 / 5)


def test_multiclass_macro_f1_and_accuracy():
    logits = torch.tensor([[2.0, 0, 0], [0, 2.0, 0], [0, 0, 2.0], [2.0, 0, 0]])
    target = torch.tensor([0, 1, 1, 2])
    f1, acc = F1(num_classes=3), Accuracy(multiclass=True)
    f1.update(logits, target)
    acc.update(logits, target)
    expected = f1_score(target.numpy(), logits.argmax(1).numpy(), average="macro")
    assert f1.compute() == pytest.approx(expected)
    assert acc.compute() == pytest.approx(0.5)
