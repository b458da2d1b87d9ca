"""Losses, masking and metrics of the built-in task kinds on hand-computed cases."""

import math

import pytest
import torch

from polytask.errors import LabelRangeError, ShapeMismatchError
from polytask.tasks import Binary, Custom, Multiclass, MultiLabel, Regression


def test_regression_mse_ignores_nan_labels():
    task = Regression("r")
    out = torch.tensor([[1.0], [2.0], [5.0]])
    target = torch.tensor([0.0, float("nan"), 3.0])
    # (1-0)^2 and (5-3)^2 -> mean of 1 and 4
    assert task.loss(out, target).item() == pytest.approx(2.5)


def test_regression_l1_multi_dim_per_entry_mask():
    task = Regression("r", dim=2, loss_type="l1")
    out = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    target = torch.tensor([[0.0, float("nan")], [2.0, -1.0]])
    assert task.loss(out, target).item() == pytest.approx((1 + 2 + 1) / 3)


def test_binary_bce_hand_computed_and_sentinels():
    task = Binary("b")
    out = torch.tensor([0.0, 2.0, -3.0, 1.0])
    target = torch.tensor([1.0, 0.0, -1.0, float("nan")])
    expected = (math.log(2) + math.log(1 + math.exp(2))) / 2
    assert task.loss(out, target).item() == pytest.approx(expected, rel=1e-6)


def test_multiclass_cross_entropy_ignores_missing():
    task = Multiclass("c", num_classes=3)
    out = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    target = torch.tensor([2, -100, -1])
    assert task.loss(out, target).item() == pytest.approx(math.log(3))


def test_explicit_mask_combines_with_sentinel():
    task = Regression("r")
    out = torch.tensor([1.0, 2.0, 3.0])
    target = torch.tensor([0.0, 0.0, float("nan")])
    mask = torch.tensor([True, False, True])
    assert task.loss(out, target, mask).item() == pytest.approx(1.0)


@pytest.mark.parametrize(
    "task,out,target",
    [
        (Regression("r"), torch.randn(3, 1, requires_grad=True), torch.full((3,), float("nan"))),
        (Binary("b"), torch.randn(3, requires_grad=True), torch.full((3,), -1.0)),
        (Multiclass("c", num_classes=4), torch.randn(3, 4, requires_grad=True),
         torch.full((3,), -100)),
        (MultiLabel("m", num_labels=2), torch.randn(3, 2, requires_grad=True),
         torch.full((3, 2), float("nan"))),
    ],
)
def test_batch_without_labels_gives_zero_not_nan(task, out, target):
    loss = task.loss(out, target)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(out.grad, torch.zeros_like(out))


def test_multilabel_masks_entries():
    task = MultiLabel("m", num_labels=2)
    out = torch.zeros(2, 2)
    target = torch.tensor([[1.0, -1.0], [0.0, float("nan")]])
    assert task.loss(out, target).item() == pytest.approx(math.log(2))


def test_custom_task_loss_and_metric():
    task = Custom(
        "c", size=1, loss_fn=lambda o, t: (o.squeeze(-1) - t).abs(),
        metric_fns={"maxerr": (lambda p, t: float((p.squeeze(-1) - t).abs().max()), False)},
        missing=lambda t: torch.isnan(t),
    )
    out = torch.tensor([[1.0], [4.0], [0.0]])
    target = torch.tensor([0.0, 1.0, float("nan")])
    assert task.loss(out, target).item() == pytest.approx(2.0)
    metrics = task.metrics()
    task.update_metrics(metrics, out, target)
    assert metrics["maxerr"].compute() == pytest.approx(3.0)
    assert task.higher_is_better == {"maxerr": False}


def test_directions():
    assert Regression("r").higher_is_better == {"mae": False, "rmse": False}
    assert Binary("b").higher_is_better == {"accuracy": True, "auc": True, "f1": True}
    assert Multiclass("c", num_classes=3).higher_is_better == {"accuracy": True, "f1": True}


def test_shape_errors_name_task_and_shapes():
    with pytest.raises(ShapeMismatchError, match=r"task 'c'.*\(4, 2\).*\(4, 3\)"):
        Multiclass("c", num_classes=3).loss(torch.zeros(4, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ShapeMismatchError, match=r"task 'b'.*\(4, 2\)"):
        Binary("b").loss(torch.zeros(4, 2), torch.zeros(4))
    with pytest.raises(ShapeMismatchError, match=r"task 'r'.*batch size 4"):
        Regression("r").loss(torch.zeros(4, 1), torch.zeros(5))


def test_label_range_errors():
    with pytest.raises(LabelRangeError, match=r"task 'c'.*label 3 outside 0..2"):
        Multiclass("c", num_classes=3).loss(torch.zeros(2, 3), torch.tensor([0, 3]))
    with pytest.raises(LabelRangeError, match=r"task 'c'.*label -5"):
        Multiclass("c", num_classes=3).loss(torch.zeros(2, 3), torch.tensor([0, -5]))
    with pytest.raises(LabelRangeError, match=r"task 'b'.*label 2"):
        Binary("b").loss(torch.zeros(2), torch.tensor([0.0, 2.0]))


def test_metrics_skip_missing_labels():
    task = Binary("b")
    metrics = task.metrics()
    out = torch.tensor([2.0, -2.0, 2.0, -2.0])  # probabilities ~0.88, 0.12, 0.88, 0.12
    target = torch.tensor([1.0, 0.0, -1.0, 1.0])
    task.update_metrics(metrics, out, target)
    assert metrics["accuracy"].compute() == pytest.approx(2 / 3)
    # positives 0.88 and 0.12 against the negative 0.12: one win, one tie; the missing
    # sample (0.88) would give 5/6 if it were counted as a positive
    assert metrics["auc"].compute() == pytest.approx(0.75)
