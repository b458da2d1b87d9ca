"""The dense presets run end to end on small files in the real layout."""

import dataclasses
import json

import pytest
from _dense_layout import write_nyuv2

from polytask import benchmarks
from polytask.benchmarks import BenchmarkRunner
from polytask.benchmarks.dense import _segnet_backbone
from polytask.cli import main
from polytask.data.paths import default_data_dir


def _small(name, **changes):
    bench = benchmarks.get(name)
    return dataclasses.replace(bench, backbone=_segnet_backbone((4, 8), (1, 1)), **changes)


def test_nyuv2_preset_states_the_libmtl_protocol():
    b = benchmarks.get("nyuv2")
    assert (b.epochs, b.batch_size, b.lr, b.weight_decay) == (200, 2, 1e-4, 0.0)
    assert b.options["select"] == "delta_m" and b.options["delta_m"] == "task"
    assert b.options["train_transform"] is not None
    import torch

    sched = b.options["scheduler"](torch.optim.Adam([torch.zeros(1, requires_grad=True)]))
    assert (sched.step_size, sched.gamma) == (100, 0.5)
    r = benchmarks.get("nyuv2-resnet50")
    assert (r.batch_size, r.weight_decay) == (8, 1e-5)
    assert benchmarks.get("cityscapes").report.keys() == {"segmentation", "depth"}


def test_nyuv2_runs_on_files_in_the_layout(tmp_path):
    root = write_nyuv2(tmp_path / "nyu", n_train=4, n_val=2, h=8, w=8)
    bench = _small("nyuv2", epochs=2)
    runner = BenchmarkRunner(bench, out_dir=tmp_path / "out", data_dir=root, progress=False,
                             log=lambda s: None)
    results = runner.run(["ew"], ["hard"], [0])
    assert results.convention == "task"
    run = results.runs[0]
    assert set(run.metrics) == {"segmentation", "depth", "normal"}
    assert run.delta_m is not None
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["delta_m_convention"] == "task"
    # the metric convention gives another number from the same runs
    runner2 = BenchmarkRunner(bench, out_dir=tmp_path / "out", data_dir=root, progress=False,
                              log=lambda s: None, delta_m_convention="metric")
    assert runner2.run(["ew"], ["hard"], [0]).runs[0].delta_m != pytest.approx(run.delta_m)


def test_bench_needs_the_data_directory(capsys):
    assert main(["bench", "nyuv2", "--epochs", "1", "--no-progress"]) == 2
    assert "--data DIR" in capsys.readouterr().err


def test_dense_multimnist_runs_when_mnist_is_there(tmp_path, monkeypatch):
    if not (default_data_dir() / "mnist" / "mnist.pkl.gz").is_file():
        pytest.skip("MNIST not fetched (polytask data get mnist)")
    from polytask.benchmarks import dense

    monkeypatch.setattr(dense, "DENSE_MNIST_SIZES", (32, 16, 16))
    bench = dataclasses.replace(benchmarks.get("dense-multimnist"), epochs=1)
    runner = BenchmarkRunner(bench, out_dir=tmp_path, progress=False, log=lambda s: None)
    results = runner.run(["ew"], ["mtan"], [0])
    assert results.runs[0].metrics["segmentation"]["miou"] > 0


def test_protocol_callbacks_step_the_schedule_and_keep_the_best_delta_m_epoch():
    import torch

    from polytask.benchmarks.protocol import BestByDeltaM, SchedulerStep
    from polytask.models import HardSharing
    from polytask.tasks import Regression
    from polytask.training import MultiTaskDataset, Trainer, batch_loader

    torch.manual_seed(0)
    tasks = [Regression("a"), Regression("b")]
    model = HardSharing(torch.nn.Linear(3, 4), tasks)
    step = SchedulerStep(lambda opt: torch.optim.lr_scheduler.StepLR(opt, 1, gamma=0.5))
    trainer = Trainer(model, tasks, "ew", lambda p: torch.optim.SGD(p, lr=0.1),
                      callbacks=[step], progress=False, device="cpu")
    data = MultiTaskDataset(torch.randn(8, 3), {"a": torch.randn(8), "b": torch.randn(8)})
    trainer.fit(batch_loader(data, 4), 2)
    assert trainer.optimizer.param_groups[0]["lr"] == 0.1 * 0.25

    directions = {"a": {"mae": False}, "b": {"mae": False}}
    keep = BestByDeltaM({"a": {"mae": 1.0}, "b": {"mae": 1.0}}, directions, "metric")
    weights = []
    for epoch, (a, b) in enumerate([(0.9, 1.2), (0.8, 0.8), (1.0, 0.7)]):
        with torch.no_grad():
            model.encoder.weight.fill_(float(epoch))
        weights.append(model.encoder.weight.clone())
        keep.on_epoch_end(trainer, epoch, {"val": {"a/mae": a, "b/mae": b}})
    assert keep.best_epoch == 1 and keep.best == pytest.approx(20.0)
    keep.restore(model)
    assert torch.equal(model.encoder.weight, weights[1])
