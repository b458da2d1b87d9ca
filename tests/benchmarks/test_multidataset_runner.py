"""The multi-dataset runner and the mnist+fashion benchmark (on small files written in
the real formats)."""

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch

from polytask.benchmarks import (
    Benchmark,
    MultiDatasetData,
    MultiDatasetRunner,
    Split,
    get,
    runner_class,
)
from polytask.benchmarks.mnist_fashion import load_mnist_fashion
from polytask.benchmarks.multidataset import parse_run
from polytask.data import digits as dg
from polytask.errors import PolytaskError, UnknownNameError
from polytask.models import Backbone
from polytask.tasks import Multiclass, Regression


def write_mnist_pickle(root, sizes):
    """The classic format: ((x, y), (x, y), (x, y)), x float32 (N, 784) = byte / 256."""
    rng = np.random.default_rng(0)
    parts = [((rng.integers(0, 256, (n, 784)) / 256).astype(np.float32),
              rng.integers(0, 10, n).astype(np.int64)) for n in sizes]
    (root / "mnist").mkdir(parents=True)
    with gzip.open(root / "mnist" / "mnist.pkl.gz", "wb") as f:
        pickle.dump(tuple(parts), f, protocol=2)


def write_fashion(folder, n_train, n_test):
    """The four gzipped IDX files (uint8 images and labels)."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, arr in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                          ("labels-idx1", rng.integers(0, 10, n, dtype=np.uint8))):
            header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
            with gzip.open(folder / f"{prefix}-{kind}-ubyte.gz", "wb") as f:
                f.write(header + arr.tobytes())


def _toy_data() -> MultiDatasetData:
    g = torch.Generator().manual_seed(0)

    def split(n):
        xa = torch.randn(n, 6, generator=g)
        xb = torch.randn(n // 4, 6, generator=g)
        return {
            "a": Split(xa, {"a": (xa[:, 0] > 0).long()}),
            "b": Split(xb, {"b": xb[:, 1] * 2}),
        }

    return MultiDatasetData(split(120), split(40), split(40))


def toy_benchmark() -> Benchmark:
    return Benchmark(
        name="toy-two-datasets",
        description="two synthetic datasets",
        tasks=lambda: {"a": Multiclass("a", num_classes=2), "b": Regression("b")},
        load=lambda data_dir, seed: _toy_data(),
        backbone=lambda data: Backbone(
            make_encoder=lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU()),
            out_features=8,
        ),
        report={"a": ("accuracy",), "b": ("mae",)},
        epochs=2,
        batch_size=16,
        options={"steps_per_epoch": 4, "runner": "multidataset"},
    )


def test_parse_run_specs():
    assert parse_run("ew") == ("ew", None, False)
    assert parse_run("pcgrad@grouped") == ("pcgrad", "grouped", False)
    assert parse_run("ew@temperature:T=2@distill") == ("ew", "temperature:T=2", True)
    assert parse_run("ew@distill") == ("ew", None, True)
    with pytest.raises(PolytaskError, match="METHOD"):
        parse_run("ew@uniform@twice")


def test_runner_trains_schedules_balancers_and_distillation(tmp_path):
    bench = toy_benchmark()
    assert runner_class(bench) is MultiDatasetRunner
    runner = MultiDatasetRunner(bench, out_dir=tmp_path, progress=False, device="cpu",
                                log=lambda line: None)
    runs = ["ew@uniform", "ew@annealed", "ew@dynamic", "pcgrad@grouped",
            "ew@proportional@distill"]
    results = runner.run(runs, seeds=[0])
    assert [r.method for r in results.runs] == runs
    assert all(r.delta_m is not None for r in results.runs)
    for r in results.runs:  # each task evaluated on its own dataset's test split
        assert set(r.metrics) == {"a", "b"}
    curve = json.loads((tmp_path / "runs" / "hard-ew@uniform" / "seed0" /
                        "val_curve.json").read_text())
    assert curve["steps_per_epoch"] == 4 and len(curve["val_loss"]) == 2
    table = (tmp_path / "steps_to_target.md").read_text()
    assert "| ew@dynamic | hard |" in table
    with pytest.raises(UnknownNameError, match="unknown balancing method"):
        runner.run(["nope@uniform"])
    with pytest.raises(PolytaskError, match="unknown schedule 'sometimes'"):
        runner.run(["ew@sometimes"])


def test_mnist_fashion_reads_both_datasets(tmp_path, monkeypatch):
    monkeypatch.setattr(dg, "SYSTEM_FASHION_DIR", tmp_path / "none")
    write_mnist_pickle(tmp_path, sizes=(12, 4, 5))
    write_fashion(tmp_path / "fashion-mnist", n_train=12, n_test=6)
    data = load_mnist_fashion(tmp_path, fashion_train=3)
    assert {k: len(v.inputs) for k, v in data.train.items()} == {"mnist": 12, "fashion": 3}
    assert {k: len(v.inputs) for k, v in data.val.items()} == {"mnist": 4, "fashion": 2}
    assert {k: len(v.inputs) for k, v in data.test.items()} == {"mnist": 5, "fashion": 6}
    assert data.train["mnist"].inputs.shape[1:] == (1, 28, 28)
    assert set(data.train["fashion"].targets) == {"fashion"}
    bench = get("mnist+fashion")
    assert runner_class(bench) is MultiDatasetRunner
    backbone = bench.backbone(data)
    out = backbone.make_encoder()(data.train["mnist"].inputs)
    assert out.shape == (12, backbone.out_features)


def test_moleculeace_30_splits_a_joined_table_into_one_dataset_per_target():
    from polytask.benchmarks.base import BenchmarkData
    from polytask.benchmarks.moleculeace_datasets import per_target

    nan = float("nan")
    x = torch.arange(8.0).reshape(4, 2)
    joined = Split(x, {"t1": torch.tensor([1.0, nan, 3.0, nan]),
                       "t2": torch.tensor([nan, 2.0, 5.0, nan])})
    data = per_target(BenchmarkData(joined, joined, joined))
    assert torch.equal(data.train["t1"].inputs, x[[0, 2]])
    assert data.train["t1"].targets == {"t1": data.train["t1"].targets["t1"]}
    assert data.train["t2"].targets["t2"].tolist() == [2.0, 5.0]
    assert get("moleculeace-30").options["runner"] == "multidataset"
