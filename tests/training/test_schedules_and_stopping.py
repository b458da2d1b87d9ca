"""LR schedules (per epoch and per step) resume exactly; EarlyStopping stops at the
right epoch, also across a resume; callback state lives in checkpoints."""

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.errors import PolytaskError
from polytask.tasks import Binary, Regression
from polytask.training import Callback, EarlyStopping, MultiTaskDataset, Trainer, batch_loader

TASKS = [Regression("r"), Binary("b")]


def data(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    targets = {"r": 2 * x[:, 0] + 0.1 * torch.randn(n, generator=g), "b": (x[:, 1] > 0).float()}
    return MultiTaskDataset(x, targets)


def model(seed=0):
    torch.manual_seed(seed)
    return HardSharing(nn.Sequential(nn.Linear(4, 16), nn.ReLU()), TASKS, encoder_out_features=16)


def trainer(log_dir=None, method="ew", **kw):
    opt = lambda groups: torch.optim.SGD(groups, lr=0.1, momentum=0.9)  # noqa: E731
    return Trainer(model(), TASKS, method, opt, log_dir=log_dir, seed=0, progress=False,
                   device="cpu", **kw)


class LRs(Callback):
    def __init__(self):
        self.seen = []

    def on_step_end(self, trainer, step, record):
        self.seen.append(trainer.optimizer.param_groups[0]["lr"])


def step_lr(opt):
    return torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)


def cosine(opt):
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)


@pytest.mark.parametrize(("factory", "interval"), [(step_lr, "epoch"), (cosine, "step")])
def test_a_schedule_resumed_equals_the_uninterrupted_one(tmp_path, factory, interval):
    loader = batch_loader(data(), 32, shuffle=True)
    val = batch_loader(data(32, 1), 32)
    lrs = LRs()
    full = trainer(tmp_path / "full", scheduler=factory, scheduler_interval=interval,
                   callbacks=[lrs])
    full.fit(loader, epochs=5, val_loader=val)
    cut = trainer(tmp_path / "cut", scheduler=factory, scheduler_interval=interval)
    cut.fit(loader, epochs=2, val_loader=val)
    lrs_resumed = LRs()
    resumed = trainer(tmp_path / "cut", scheduler=factory, scheduler_interval=interval,
                      callbacks=[lrs_resumed])
    resumed.fit(loader, epochs=5, val_loader=val, resume=True)
    assert lrs_resumed.seen == lrs.seen[-len(lrs_resumed.seen):]
    assert resumed.lr_scheduler.state_dict() == full.lr_scheduler.state_dict()
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    if interval == "epoch":  # StepLR(2, 0.5) per epoch: 0.1, 0.1, 0.05, 0.05, 0.025
        per_epoch = lrs.seen[::4]
        assert per_epoch == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    else:  # cosine per step: a new value at every one of the 20 steps
        assert len(set(lrs.seen)) == 20


def test_a_ready_scheduler_must_be_on_the_trainers_optimizer():
    other = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    with pytest.raises(PolytaskError, match="another optimizer"):
        trainer(scheduler=torch.optim.lr_scheduler.StepLR(other, 1))
    with pytest.raises(PolytaskError, match="scheduler_interval"):
        trainer(scheduler=step_lr, scheduler_interval="batch")
    with pytest.raises(PolytaskError, match="ReduceLROnPlateau needs"):
        trainer(scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau, scheduler_interval="step")
    plateau = trainer(scheduler=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o))
    plateau.fit(batch_loader(data(), 32), epochs=1)  # stepped with the monitored loss


def scripted_trainer(values, log_dir=None, **stop):
    """A trainer whose monitored loss at epoch e is values[e]."""
    t = trainer(log_dir, callbacks=[EarlyStopping(**stop)])
    original = t.monitored_value

    def monitored(logs, monitor=None, warn=False):
        epoch = t.epochs_done - 1
        return values[epoch] if monitor in (None, "loss") else original(logs, monitor, warn)

    t.monitored_value = monitored
    return t


def test_early_stopping_stops_at_the_right_epoch():
    # best at epoch 2 (1.0); epochs 3, 4, 5 do not improve by min_delta=0.1: stop after 5
    values = [3.0, 2.0, 1.0, 0.95, 1.2, 0.99, 0.5, 0.4]
    t = scripted_trainer(values, patience=3, min_delta=0.1)
    t.fit(batch_loader(data(), 64), epochs=8)
    stop = t.callbacks[0]
    assert stop.stopped_epoch == 5 and t.epochs_done == 6 and len(t.history) == 6
    assert stop.best == 1.0 and stop.mode == "min"
    assert t.best_epoch == 3  # the Trainer's own best (no min_delta) is unaffected


def test_early_stopping_on_a_metric_reads_its_direction():
    t = trainer(callbacks=[EarlyStopping("b/accuracy", patience=1)], train_metrics=True)
    t.fit(batch_loader(data(), 64), epochs=1)
    assert t.callbacks[0].mode == "max"
    with pytest.raises(PolytaskError, match="task 'b' has metrics"):
        trainer(callbacks=[EarlyStopping("b/nope")]).fit(batch_loader(data(), 64), epochs=1)
    with pytest.raises(PolytaskError, match="patience"):
        EarlyStopping(patience=0)


def test_early_stopping_is_resumable(tmp_path):
    values = [3.0, 2.0, 1.0, 1.5, 1.6, 1.7, 0.1, 0.1]
    full = scripted_trainer(values, tmp_path / "full", patience=3)
    full.fit(batch_loader(data(), 64), epochs=8)
    assert full.callbacks[1].stopped_epoch == 5  # callbacks[0] is the CSV logger
    cut = scripted_trainer(values, tmp_path / "cut", patience=3)
    cut.fit(batch_loader(data(), 64), epochs=4)  # interrupted while waiting
    resumed = scripted_trainer(values, tmp_path / "cut", patience=3)
    resumed.fit(batch_loader(data(), 64), epochs=8, resume=True)
    assert resumed.callbacks[1].stopped_epoch == 5 and resumed.epochs_done == 6
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    again = scripted_trainer(values, tmp_path / "cut", patience=3)  # stopped: stays stopped
    again.fit(batch_loader(data(), 64), epochs=8, resume=True)
    assert again.epochs_done == 6
    state = torch.load(tmp_path / "cut" / "last.pt", weights_only=True)
    assert state["callbacks"]["EarlyStopping"]["stopped_epoch"] == 5
    assert state["should_stop"] is True


def test_the_readme_example_runs(tmp_path, monkeypatch):
    import re
    from pathlib import Path

    import polytask as pt

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Mixed precision, schedules, early stopping"):]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    code = code.replace("epochs=100", "epochs=3")
    monkeypatch.chdir(tmp_path)
    tasks = {t.name: t for t in TASKS}
    namespace = {"pt": pt, "torch": torch, "model": model(), "tasks": tasks,
                 "train_loader": batch_loader(data(), 32, shuffle=True),
                 "val_loader": batch_loader(data(32, 1), 32)}
    exec(compile(code, "README.md", "exec"), namespace)
    t = namespace["trainer"]
    assert t.precision.name == "bf16" and t.epochs_done == 3
    assert (tmp_path / "runs" / "nash" / "last.pt").exists()


def test_steps_csv_records_each_steps_learning_rate(tmp_path):
    import csv

    seen = LRs()
    t = trainer(tmp_path, scheduler=cosine, scheduler_interval="step", callbacks=[seen])
    t.fit(batch_loader(data(), batch_size=32), 2)
    rows = list(csv.DictReader((tmp_path / "steps.csv").open()))
    logged = [float(r["lr"]) for r in rows]
    assert logged[0] == pytest.approx(0.1)  # the rate the first step used
    assert logged[1] < logged[0]  # the per-step cosine schedule
    # a callback sees the rate after the scheduler's step: one step ahead of the log
    assert logged[1:] == pytest.approx(seen.seen[:-1])
