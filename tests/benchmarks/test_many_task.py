"""The many-task benchmarks end to end on small files in the real formats."""

from __future__ import annotations

import sys
from pathlib import Path

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
