"""Trainer: learning, logs, checkpoints, resume equivalence, bad input."""

import csv
import math

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.errors import (
    NonFiniteLossError,
    PolytaskError,
    ShapeMismatchError,
    TargetMissingError,
)
from polytask.tasks import Binary, Regression
from polytask.training import MultiTaskDataset, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b")]


def data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    targets = {"r": 2 * x[:, 0] + 0.1 * torch.randn(n, generator=g), "b": (x[:, 1] > 0).float()}
    return MultiTaskDataset(x, targets)


def model(seed=0):
    torch.manual_seed(seed)
    return HardSharing(nn.Sequential(nn.Linear(4, 16), nn.ReLU()), TASKS, encoder_out_features=16)


def trainer(log_dir=None, **kw):
    opt = lambda groups: torch.optim.Adam(groups, lr=1e-2)  # noqa: E731
    return Trainer(model(), TASKS, "ew", opt, log_dir=log_dir, seed=0, progress=False, **kw)


def test_fit_learns_and_evaluate_reports_every_metric():
    t = trainer()
    before = t.evaluate(batch_loader(data(), 128))
    t.fit(batch_loader(data(), 32, shuffle=True), epochs=8)
    after = t.evaluate(batch_loader(data(), 128))
    assert after["r"]["mae"] < 0.5 * before["r"]["mae"]
    assert after["b"]["accuracy"] > 0.9
    assert set(after["b"]) == {"accuracy", "auc", "f1", "loss"}


def test_logs_and_checkpoints_written(tmp_path):
    t = trainer(tmp_path)
    val = batch_loader(data(64, 1), 64)
    t.fit(batch_loader(data(), 64, shuffle=True), epochs=2, val_loader=val)
    steps = list(csv.DictReader((tmp_path / "steps.csv").open()))
    epochs = list(csv.DictReader((tmp_path / "epochs.csv").open()))
    assert len(steps) == 8 and {"loss/r", "loss/b", "weight/r", "weight/b"} <= set(steps[0])
    assert [(r["epoch"], r["split"]) for r in epochs] == [
        ("0", "train"), ("0", "val"), ("1", "train"), ("1", "val")
    ]
    assert "b/auc" in epochs[1]
    assert (tmp_path / "last.pt").exists() and (tmp_path / "best.pt").exists()


def test_resume_gives_the_same_result_as_never_stopping(tmp_path):
    full = trainer(tmp_path / "full")
    full.fit(batch_loader(data(), 32, shuffle=True), epochs=4)

    first = trainer(tmp_path / "cut")
    first.fit(batch_loader(data(), 32, shuffle=True), epochs=2)
    torch.manual_seed(12345)  # disturb the global RNG: resume must restore it
    resumed = trainer(tmp_path / "cut")
    resumed.fit(batch_loader(data(), 32, shuffle=True), epochs=4, resume=True)

    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    rows = list(csv.DictReader((tmp_path / "cut" / "steps.csv").open()))
    assert len(rows) == 4 * 8


def test_missing_target_names_task_and_keys():
    x = torch.randn(8, 4)
    batch = (x, {"r": torch.zeros(8)})
    with pytest.raises(TargetMissingError, match=r"task 'b'.*present: \['r'\]"):
        trainer().fit([batch], epochs=1)


def test_head_shape_mismatch_names_shapes():
    t = trainer()
    t.model.heads["r"] = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    t.shared_params = list(t.model.shared_parameters())
    with pytest.raises(ShapeMismatchError, match=r"task 'r'.*\(8, 3\)"):
        t.fit([(torch.randn(8, 4), {"r": torch.zeros(8), "b": torch.zeros(8)})], epochs=1)


def test_nan_loss_names_task_and_step():
    x = torch.randn(8, 4)
    good = (x, {"r": torch.zeros(8), "b": torch.zeros(8)})
    bad = (x, {"r": torch.full((8,), float("inf")), "b": torch.zeros(8)})
    with pytest.raises(NonFiniteLossError, match=r"\['r'\] at balancer step 2"):
        trainer().fit([good, good, bad], epochs=1)


def test_empty_task_set_and_bad_monitor():
    with pytest.raises(PolytaskError, match="empty"):
        Trainer(model(), [], "ew")
    with pytest.raises(PolytaskError, match="task 'b' has metrics"):
        trainer(monitor="b/mae")


def test_missing_labels_in_a_batch_are_fine():
    x = torch.randn(8, 4)
    batch = (x, {"r": torch.full((8,), float("nan")), "b": torch.ones(8)})
    with pytest.warns(RuntimeWarning, match="no labeled sample"):
        history = trainer().fit([batch], epochs=1)
    assert math.isnan(history[0]["train"]["loss/r"])  # no label all epoch: no mean loss
