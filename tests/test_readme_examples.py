"""The README's code examples run as written (with small synthetic data)."""

import torch
from torch import nn

import polytask as pt
from polytask.training import MultiTaskDataset, Trainer, batch_loader


def synthetic(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 64, generator=g)
    y = {
        "click": (x[:, 0] > 0).float(),
        "conversion": (x[:, 1] > 0).float(),
        "dwell_time": x[:, 2].clone(),
    }
    return x, y


def test_plain_loop_example():
    x, y = synthetic()
    loader = batch_loader(MultiTaskDataset(x, y), batch_size=16, shuffle=True)
    tasks = [pt.Binary("click"), pt.Binary("conversion"), pt.Regression("dwell_time")]
    encoder = nn.Sequential(nn.Linear(64, 128), nn.ReLU())
    model = pt.HardSharing(encoder, tasks, encoder_out_features=128)
    balancer = pt.balancing.get("pcgrad")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for x_batch, targets in loader:
        out = model(x_batch)
        losses = {t.name: t.loss(out[t.name], targets[t.name]) for t in tasks}
        optimizer.zero_grad()
        result = balancer.backward(losses, shared_params=model.shared_parameters())
        optimizer.step()
    assert set(result.weights) == {"click", "conversion", "dwell_time"}
    assert all(p.grad is not None for p in model.parameters())


def test_trainer_example(tmp_path):
    x, y = synthetic()
    tasks = [pt.Binary("click"), pt.Binary("conversion"), pt.Regression("dwell_time")]
    model = pt.HardSharing(nn.Sequential(nn.Linear(64, 32), nn.ReLU()), tasks,
                           encoder_out_features=32)
    train = batch_loader(MultiTaskDataset(x, y), batch_size=16, shuffle=True)
    val = batch_loader(MultiTaskDataset(x, y), batch_size=64)
    trainer = Trainer(model, tasks, "uw", log_dir=tmp_path / "run", seed=0, progress=False)
    trainer.fit(train, epochs=2, val_loader=val)
    metrics = trainer.evaluate(val)
    assert {"auc", "loss"} <= set(metrics["click"]) and "mae" in metrics["dwell_time"]
    assert (tmp_path / "run" / "best.pt").exists()
