"""Benchmark runner pieces: method specs, Δm per run, baselines cache, table."""

import pytest

from polytask.benchmarks import BenchmarkRunner, format_table, get, parse_method
from polytask.errors import PolytaskError


def test_parse_method_specs():
    assert parse_method("ew") == ("ew", {})
    assert parse_method("cagrad:c=0.4,path=gramian") == ("cagrad", {"c": 0.4, "path": "gramian"})
    assert parse_method("weighted:weights={'a': 2, 'b': 1}") == (
        "weighted", {"weights": {"a": 2, "b": 1}}
    )
    with pytest.raises(PolytaskError, match="not key=value"):
        parse_method("cagrad:0.4")


def test_runner_caches_baselines_and_reports_delta_m(tmp_path):
    logs = []
    runner = BenchmarkRunner(get("multidigits"), out_dir=tmp_path, epochs=1, progress=False,
                             log=logs.append)
    results = runner.run(["ew"], seeds=[0])
    assert len([line for line in logs if "single-task" in line]) == 2
    run = results.runs[0]
    assert run.delta_m is not None
    table = format_table(results)
    assert table.splitlines()[0].split()[:2] == ["method", "arch"]
    logs.clear()
    again = runner.run(["ew"], seeds=[0])  # baselines and the run come from the cache
    assert len(logs) == 1 and "reused" in logs[0]
    assert again.runs[0].metrics == run.metrics
    runner.reuse = False
    logs.clear()
    runner.run(["ew"], seeds=[0])
    assert len(logs) == 3


def test_markdown_table_has_a_row_per_method(tmp_path):
    from polytask.benchmarks import format_markdown

    runner = BenchmarkRunner(get("multidigits"), out_dir=tmp_path, epochs=1, progress=False,
                             log=lambda line: None)
    results = runner.run(["ew", "rlw"], seeds=[0])
    lines = format_markdown(results).splitlines()
    assert lines[0].startswith("| method | arch | left/accuracy")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["single-task", "ew", "rlw"]
    assert (tmp_path / "results.md").read_text().strip() == format_markdown(results)
