"""The polytask command line on the bundled multidigits benchmark."""

import csv
import json

from polytask.cli import main


def test_bench_multidigits_one_epoch_writes_table_and_files(tmp_path, capsys):
    out = tmp_path / "run"
    code = main([
        "bench", "multidigits", "--methods", "ew,weighted:left=2.0", "--epochs", "1",
        "--seeds", "2", "--out", str(out), "--no-progress",
    ])
    assert code == 0
    printed = capsys.readouterr().out
    assert "single-task" in printed and "Δm % (test)" in printed and "weighted:left=2.0" in printed
    results = json.loads((out / "results.json").read_text())
    assert {r["method"] for r in results["runs"]} == {"ew", "weighted:left=2.0"}
    assert len(results["runs"]) == 4 and set(results["baselines"]) == {"0", "1"}
    for run in results["runs"]:
        assert isinstance(run["delta_m"], float)
        assert 0.0 <= run["metrics"]["left"]["accuracy"] <= 1.0
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 + 4  # baselines and runs, per seed
    assert (out / "runs" / "hard-ew" / "seed0" / "steps.csv").exists()


def test_bench_unknown_method_lists_available(capsys):
    assert main(["bench", "multidigits", "--methods", "nope", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown balancing method 'nope'" in err and "ew" in err


def test_bench_unknown_benchmark(capsys):
    assert main(["bench", "nope"]) == 2
    assert "available: " in capsys.readouterr().err


def test_list_shows_benchmarks_methods_architectures(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("census-income", "multimnist", "multidigits", "ew", "weighted", "hard"):
        assert name in out


def test_data_get_unknown_name(capsys):
    assert main(["data", "get", "nope"]) == 2
    assert "census-income" in capsys.readouterr().err


def test_bench_config_file(tmp_path, capsys):
    config = tmp_path / "bench.yaml"
    out = tmp_path / "cfg-run"
    config.write_text(
        f"name: multidigits\nmethods: [ew, 'weighted:left=3.0']\nepochs: 1\nout: {out}\n"
    )
    assert main(["bench", "--config", str(config), "--no-progress"]) == 0
    assert "weighted:left=3.0" in (out / "results.txt").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: multidigits\nmethod: ew\n")
    assert main(["bench", "--config", str(bad)]) == 2
    assert "unknown keys ['method']" in capsys.readouterr().err
