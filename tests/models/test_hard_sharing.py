"""HardSharing: parameter split, default heads, representation, errors."""

import pytest
import torch
from torch import nn

from polytask import models
from polytask.errors import PolytaskError
from polytask.models import Backbone, HardSharing
from polytask.tasks import Binary, Multiclass, Regression

TASKS = [Regression("r", dim=2), Binary("b"), Multiclass("c", num_classes=4)]


def make(**kw):
    return HardSharing(nn.Sequential(nn.Linear(5, 8), nn.ReLU()), TASKS, **kw)


def test_parameter_split_covers_everything_without_overlap():
    model = make(encoder_out_features=8)
    shared = {id(p) for p in model.shared_parameters()}
    per_task = {n: {id(p) for p in model.task_parameters(n)} for n in model.task_names}
    every = {id(p) for p in model.parameters()}
    union = set(shared)
    for name, ids in per_task.items():
        assert ids and not (ids & shared), name
        for other, other_ids in per_task.items():
            if other != name:
                assert not (ids & other_ids)
        union |= ids
    assert union == every
    assert shared == {id(p) for p in model.encoder.parameters()}


def test_default_heads_fit_tasks_and_representation_is_kept():
    model = make(example_input=torch.zeros(1, 5))
    out = model(torch.randn(3, 5))
    assert out["r"].shape == (3, 2) and out["b"].shape == (3, 1) and out["c"].shape == (3, 4)
    assert model.shared_representation.shape == (3, 8)
    assert model.shared_representation.requires_grad


def test_user_heads_are_used():
    head = nn.Linear(8, 1)
    model = make(heads={"b": head}, encoder_out_features=8)
    assert model.heads["b"] is head


def test_errors():
    with pytest.raises(PolytaskError, match="output size"):
        make()
    with pytest.raises(PolytaskError, match="unknown tasks"):
        make(heads={"zzz": nn.Linear(8, 1)}, encoder_out_features=8)
    with pytest.raises(PolytaskError, match="empty"):
        HardSharing(nn.Linear(2, 2), [], encoder_out_features=2)
    with pytest.raises(PolytaskError, match="unknown task 'x'"):
        list(make(encoder_out_features=8).task_parameters("x"))


def test_registry_builds_hard_sharing_and_lists_it():
    backbone = Backbone(make_encoder=lambda: nn.Linear(5, 6), out_features=6)
    model = models.get("hard", tasks=TASKS, backbone=backbone)
    assert isinstance(model, HardSharing)
    assert "hard" in models.available()
    with pytest.raises(KeyError, match="available: .*hard"):
        models.get("no-such-arch", tasks=TASKS, backbone=backbone)
