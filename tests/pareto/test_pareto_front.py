"""The front interface: named split, finite fronts answer only their rays, outputs."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from polytask import Multiclass, PolytaskError
from polytask.models import HardSharing
from polytask.pareto import (
    FiniteFront,
    FrontResult,
    PreferenceError,
    plot_fronts,
    train_finite_front,
    uniform_rays,
    write_front,
)
from polytask.training.batches import MultiTaskDataset, batch_loader


def _tasks():
    return {"a": Multiclass("a", num_classes=2), "b": Multiclass("b", num_classes=2)}


def _make():
    return HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), _tasks(),
                       encoder_out_features=8)


def _loader(n=64, shuffle=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 4, generator=g)
    y = {"a": (x[:, 0] > 0).long(), "b": (x[:, 0] + x[:, 1] > 0).long()}
    return batch_loader(MultiTaskDataset(x, y), 32, shuffle)


@pytest.fixture(scope="module")
def front():
    return train_finite_front(_make, _tasks(), "ls", uniform_rays(3), _loader(shuffle=True), 2)


def test_finite_front_evaluates_each_ray_on_a_named_split(front, tmp_path):
    result = front.evaluate(_loader(), split="test")
    assert result.losses.shape == (3, 2) and result.prefs.shape == (3, 2)
    # the ray that weights task a most has the lowest loss a
    assert result.losses[np.argmax(result.prefs[:, 0]), 0] == result.losses[:, 0].min()
    paths = write_front(result, tmp_path)
    back = FrontResult.from_json(json.loads(paths["json"].read_text()))
    np.testing.assert_allclose(back.losses, result.losses)
    assert "fidelity_deg" in paths["csv"].read_text().splitlines()[0]
    png = plot_fronts([result], tmp_path / "f.png", single_task=[0.3, 0.3], ref=[2, 2])
    assert png.stat().st_size > 1000


def test_the_training_split_is_refused_unless_asked(front):
    with pytest.raises(PolytaskError, match="training split"):
        front.evaluate(_loader(), split="train")
    with pytest.raises(PolytaskError, match="unknown split"):
        front.evaluate(_loader(), split="dev")
    assert front.evaluate(_loader(), split="train", allow_train=True).split == "train"


def test_a_finite_front_answers_only_its_rays(front):
    with pytest.raises(PreferenceError, match="no model for preference"):
        front.model_for([0.3, 0.7])
    assert front.model_for([0.5, 0.5]) is front.models[1]


def test_more_rays_than_supported_and_unknown_methods():
    with pytest.raises(PreferenceError, match="at most 64"):
        train_finite_front(_make, _tasks(), "ls", uniform_rays(65), _loader(), 1)
    with pytest.raises(PolytaskError, match="unknown finite-front method"):
        train_finite_front(_make, _tasks(), "nope", uniform_rays(2), _loader(), 1)
    with pytest.raises(PreferenceError):
        FiniteFront([_make()], [[0.5, 0.5], [1, 0]], _tasks())
