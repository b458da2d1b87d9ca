"""Predictions in each task's natural form, from Trainer.predict and predict()."""

import pytest
import torch
from torch import nn

import polytask as pt
from polytask.errors import PolytaskError
from polytask.training import MultiTaskDataset, Trainer, batch_loader, predict

TASKS = [pt.Binary("b"), pt.Multiclass("m", num_classes=3), pt.MultiLabel("l", num_labels=2),
         pt.Regression("r"), pt.Regression("v", dim=2)]


def setup(n=20):
    torch.manual_seed(0)
    model = pt.HardSharing(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), TASKS,
                           encoder_out_features=8)
    x = torch.randn(n, 4)
    y = {"b": (x[:, 0] > 0).float(), "m": torch.randint(0, 3, (n,)),
         "l": (x[:, :2] > 0).float(), "r": x[:, 1].clone(), "v": x[:, 2:].clone()}
    return model, x, y


def test_natural_forms_and_shapes():
    model, x, _ = setup()
    p = predict(model, TASKS, x)
    assert p["b"].shape == (20,) and bool(((p["b"] > 0) & (p["b"] < 1)).all())
    assert p["m"].shape == (20, 3) and torch.allclose(p["m"].sum(1), torch.ones(20))
    assert p["l"].shape == (20, 2) and bool(((p["l"] > 0) & (p["l"] < 1)).all())
    assert p["r"].shape == (20,) and p["v"].shape == (20, 2)
    out = model(x)
    assert torch.allclose(p["r"], out["r"].reshape(-1).detach())
    assert torch.allclose(p["m"], torch.softmax(out["m"], -1).detach())


def test_trainer_predict_takes_a_loader_and_matches_its_metrics():
    model, x, y = setup()
    trainer = Trainer(model, TASKS, progress=False)
    loader = batch_loader(MultiTaskDataset(x, y), batch_size=6)
    p = trainer.predict(loader)  # (inputs, targets) batches: targets ignored
    assert p["b"].shape == (20,)
    assert torch.allclose(p["b"], trainer.predict(x)["b"])
    metrics = pt.Binary("b").metrics()
    metrics["auc"].update(p["b"], y["b"])  # metric objects take predictions as they are
    assert metrics["auc"].compute() == pytest.approx(trainer.evaluate(loader)["b"]["auc"])
    acc = pt.Multiclass("m", num_classes=3).metrics()["accuracy"]
    acc.update(p["m"], y["m"])
    assert acc.compute() == pytest.approx(trainer.evaluate(loader)["m"]["accuracy"])
    assert model.training  # predict leaves the mode as it was


def test_predict_errors_name_what_is_wrong():
    model, x, _ = setup()
    with pytest.raises(PolytaskError, match="no batch"):
        predict(model, TASKS, [])
    with pytest.raises(PolytaskError, match="no output for task 'z'"):
        predict(model, [*TASKS, pt.Binary("z")], x)
