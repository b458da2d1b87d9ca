"""The many-task benchmarks end to end on small files in the real formats."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from polytask.benchmarks import BenchmarkRunner, get

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from _formats import write_yeast  # noqa: E402  (tests/data/_formats.py)


def test_yeast_benchmark_trains_on_the_real_format(tmp_path: Path) -> None:
    write_yeast(tmp_path, n=1600)
    bench = get("yeast")
    assert len(bench.tasks()) == 14 and bench.fetch_name == "yeast"
    runner = BenchmarkRunner(bench, out_dir=tmp_path / "out", data_dir=tmp_path, epochs=1,
                             progress=False, log=lambda line: None)
    results = runner.run(["ew"], seeds=[0])
    (run,) = results.runs
    assert set(run.metrics) == set(bench.report) and run.delta_m is not None
    assert all(0.0 <= run.metrics[t]["auc"] <= 1.0 for t in bench.report)
    assert runner.data.test.inputs.shape == (100, 103)


def test_census_income_many_benchmark(tmp_path: Path) -> None:
    from test_census_income import many_rows, write_csv

    from polytask.data import census_income as ci

    write_csv(tmp_path / "census-income" / ci.TRAIN_FILE, many_rows(60))
    write_csv(tmp_path / "census-income" / ci.TEST_FILE, many_rows(40, offset=70))
    bench = get("census-income-many")
    assert list(bench.report) == list(ci.CENSUS_MANY_TASKS)
    runner = BenchmarkRunner(bench, out_dir=tmp_path / "out", data_dir=tmp_path, epochs=1,
                             batch_size=16, progress=False, log=lambda line: None)
    results = runner.run(["ew"], archs=["mmoe"], seeds=[0])
    (run,) = results.runs
    assert run.arch == "mmoe" and set(run.metrics) == set(bench.report)
    assert run.delta_m is not None


def test_moleculeace_benchmark_standardises_and_reports_rmse_in_file_units(tmp_path):
    pytest.importorskip("rdkit")
    from _formats import write_moleculeace

    from polytask.tasks import StandardizedRegression

    write_moleculeace(tmp_path, per_file=60)
    bench = get("moleculeace")
    runner = BenchmarkRunner(bench, out_dir=tmp_path / "out", data_dir=tmp_path, epochs=1,
                             progress=False, log=lambda line: None)
    tasks = bench.build_tasks(runner.data)
    assert len(tasks) == 30 and all(isinstance(t, StandardizedRegression) for t in tasks.values())
    y = runner.data.train.targets["CHEMBL204_Ki"]
    labelled = y[~y.isnan()]
    assert tasks["CHEMBL204_Ki"].mean == pytest.approx(float(labelled.mean()), rel=1e-5)
    results = runner.run(["ew"], seeds=[0])
    (run,) = results.runs
    assert set(run.metrics) == set(bench.report) and run.delta_m is not None
    # RMSE in the file's units: predicting the training mean would give about the std
    assert all(0 < run.metrics[t]["rmse"] < 10 for t in bench.report)


def test_qm9_encoder_is_invariant_to_the_atom_order(tmp_path):
    pytest.importorskip("rdkit")
    pytest.importorskip("torch_geometric")
    import torch
    from _formats import write_qm9

    from polytask.benchmarks.qm9 import LIBMTL_TARGETS, MPNNEncoder
    from polytask.data import load_qm9

    write_qm9(tmp_path, n=12)
    graphs = load_qm9(tmp_path, n_train=4, n_val=4, n_test=4, cache=False).train.x
    batch = graphs[[0, 1, 2]]
    torch.manual_seed(0)
    enc = MPNNEncoder()
    out = enc(batch)
    assert out.shape == (3, 64)
    # renumber the atoms: the graph representation must not change (message passing and
    # Set2Set are permutation invariant), the defining property of the readout
    n = len(batch["x"])
    perm = torch.randperm(n)
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    permuted = {
        "x": batch["x"][perm], "batch": batch["batch"][perm],
        "edge_index": inverse[batch["edge_index"]], "edge_attr": batch["edge_attr"],
    }
    torch.testing.assert_close(enc(permuted), out, rtol=1e-4, atol=1e-5)
    assert set(get("qm9").report) == set(LIBMTL_TARGETS) and len(LIBMTL_TARGETS) == 11


def test_qm9_without_pyg_names_the_install_command(monkeypatch):
    import builtins

    from polytask.benchmarks import qm9
    from polytask.errors import MissingExtraError

    real_import = builtins.__import__

    def no_pyg(name, *args, **kwargs):
        if name.startswith("torch_geometric"):
            raise ImportError("No module named 'torch_geometric'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyg)
    with pytest.raises(MissingExtraError, match="pip install torch_geometric"):
        qm9.MPNNEncoder()
