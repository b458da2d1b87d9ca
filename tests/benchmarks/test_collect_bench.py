"""scripts/collect_bench.py: tables from finished runs only, Δm as the runner measures it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from polytask.benchmarks.runner import RunResult

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "collect_bench.py"


def _module():
    spec = importlib.util.spec_from_file_location("collect_bench", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write(out: Path, seed: int, method: str, rmse: float, settings: dict) -> None:
    from polytask.data.moleculeace import MOLECULEACE_TASKS

    base = {t: {"rmse": 1.0} for t in MOLECULEACE_TASKS}
    (out / "baselines").mkdir(parents=True, exist_ok=True)
    (out / "baselines" / f"seed{seed}.json").write_text(
        json.dumps({"settings": settings, "metrics": base, "val_metrics": base})
    )
    run = RunResult(
        method,
        "hard",
        seed,
        {t: {"rmse": rmse} for t in MOLECULEACE_TASKS},
        10.0,
        3,
        val_metrics={t: {"rmse": rmse} for t in MOLECULEACE_TASKS},
    )
    path = out / "runs" / f"hard-{method}" / f"seed{seed}"
    path.mkdir(parents=True, exist_ok=True)
    (path / "result.json").write_text(json.dumps({"settings": settings, "run": run.__dict__}))


def test_collect_reads_finished_runs_and_skips_other_settings(tmp_path: Path, capsys) -> None:
    mod = _module()
    settings = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0}
    _write(tmp_path, 0, "ew", 0.9, settings)
    _write(tmp_path, 1, "ew", 0.8, settings)
    _write(tmp_path, 0, "upgrad:path=representation", 1.1, settings)
    stale = RunResult("uw", "hard", 0, {}, 1.0, 1)
    (tmp_path / "runs" / "hard-uw" / "seed0").mkdir(parents=True)
    (tmp_path / "runs" / "hard-uw" / "seed0" / "result.json").write_text(
        json.dumps({"settings": {**settings, "epochs": 1}, "run": stale.__dict__})
    )
    results = mod.collect("moleculeace", tmp_path)
    assert "skipped" in capsys.readouterr().out  # the other-settings run is named, not used
    assert sorted((r.method, r.seed) for r in results.runs) == [
        ("ew", 0),
        ("ew", 1),
        ("upgrad:path=representation", 0),
    ]
    ew = [r.delta_m for r in results.runs if r.method == "ew"]
    assert ew == pytest.approx([10.0, 20.0])  # RMSE lower is better: 0.9 vs 1.0 is +10 %
    table = mod.summary_markdown(results, ["single-task", "ew", "upgrad:path=representation"])
    lines = table.splitlines()[2:]
    assert lines[1].startswith("| ew | hard | 0.8500 ± 0.0707 | +15.00 ± 7.07 | 0,1 |")
    assert "| 0 | 10 | representation |" in lines[2]
    assert "-10.00" in lines[2]


def test_collect_without_baselines_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no finished baselines"):
        _module().collect("moleculeace", tmp_path)


def test_collect_keeps_only_the_asked_seeds(tmp_path: Path) -> None:
    mod = _module()
    settings = {"epochs": 3, "batch_size": 8, "lr": 1e-3, "weight_decay": 0.0}
    _write(tmp_path, 0, "ew", 0.9, settings)
    _write(tmp_path, 1, "ew", 0.8, settings)
    results = mod.collect("moleculeace", tmp_path, {1})
    assert sorted(results.baselines) == [1]
    assert [(r.method, r.seed) for r in results.runs] == [("ew", 1)]
