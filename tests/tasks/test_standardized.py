"""StandardizedRegression: loss on the standardised scale, metrics in original units."""

import pytest
import torch

from polytask.tasks import Regression, StandardizedRegression


def test_loss_is_on_the_standardised_scale_and_predictions_in_original_units():
    task = StandardizedRegression("t", mean=10.0, std=4.0)
    target = torch.tensor([14.0, 6.0, float("nan")])
    output = torch.tensor([[1.0], [-1.0], [5.0]])  # exactly the standardised targets
    assert task.loss(output, target).item() == 0.0  # the NaN label adds nothing
    plain = Regression("t")
    off = torch.tensor([[2.0], [-1.0], [0.0]])
    assert task.loss(off, target).item() == pytest.approx(plain.loss(off, (target - 10) / 4).item())
    assert torch.equal(task.predict(output[:2]).squeeze(1), target[:2])
    metrics = task.metrics()
    task.update_metrics(metrics, off, target)
    assert metrics["mae"].compute() == pytest.approx(4.0 / 2)  # |18 - 14| and 0, over 2


def test_bad_std_is_refused():
    with pytest.raises(ValueError, match="task 'u'.*positive std"):
        StandardizedRegression("u", std=0.0)
