"""``polytask pareto`` end to end on the bundled digits, and its bad-input errors."""

import json

import pytest

from polytask.cli import main


def test_pareto_cli_writes_front_files(tmp_path, capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    out = tmp_path / "out"
    rc = main(["pareto", "multidigits", "--method", "ls,pmtl,phn-epo", "--rays", "2",
               "--test-rays", "3", "--epochs", "1", "--train-subset", "64",
               "--test-subset", "32", "--out", str(out), "--ref", "3,3", "--conflict"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test hypervolume" in text and "phn-epo" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference_point"] == [3.0, 3.0]
    assert {r["method"] for r in summary["methods"]} == {"ls", "pmtl", "phn-epo"}
    assert all(r["hv_mean"] > 0 for r in summary["methods"])
    assert "hv_gain_over_single_task" in summary["methods"][0]
    assert (out / "front.png").exists() and (out / "fronts" / "pmtl_seed0.csv").exists()
    # a second run with the same settings reuses every front and baseline
    rc = main(["pareto", "multidigits", "--method", "ls,pmtl", "--rays", "2",
               "--test-rays", "3", "--epochs", "1", "--train-subset", "64",
               "--test-subset", "32", "--out", str(out), "--ref", "3,3", "--conflict"])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("(reused)") == 2
    again = json.loads((out / "summary.json").read_text())
    assert {r["method"]: r["hv_mean"] for r in again["methods"]} == {
        r["method"]: r["hv_mean"] for r in summary["methods"] if r["method"] != "phn-epo"}


@pytest.mark.parametrize(
    "argv,match",
    [(["--ref", "2,2,2"], "3 values for the 2 tasks"), (["--method", "nope"], "unknown Pareto"),
     (["--rays", "0"], "must be >= 1"),
     (["--method", "cosmos,ls", "--rays", "65"], "rays=65 for 'ls'"),
     (["--method", "pmtl", "--rays", "1"], "pmtl needs at least two rays"),
     (["--method", "cosmos", "--test-ray-margin", "0.9"], "margin must be in [0, π/4)")],
)
def test_pareto_cli_bad_input(tmp_path, capsys, argv, match):
    rc = main(["pareto", "multidigits", "--epochs", "1", "--out", str(tmp_path), *argv])
    assert rc == 2
    assert match in capsys.readouterr().err


def test_pareto_configs_parse():
    from pathlib import Path

    from polytask.cli import build_parser
    from polytask.cli.pareto_cmd import _apply_config

    root = Path(__file__).resolve().parents[2] / "configs"
    for name in ("pareto-multimnist-paper.yaml", "pareto-multimnist-cpu.yaml",
                 "pareto-multimnist-cpu-20ep.yaml"):
        args = build_parser().parse_args(["pareto", "--config", str(root / name)])
        _apply_config(args)
        assert args.name == "pareto-multimnist" and "cosmos" in args.method


def test_phn_trains_at_its_authors_learning_rate(tmp_path):
    from polytask.benchmarks import get
    from polytask.benchmarks.pareto_runner import ParetoRunner
    from polytask.pareto import METHOD_LR, method_lr

    assert METHOD_LR["phn-epo"] == METHOD_LR["phn"] == 1e-4  # Navon et al.'s trainer.py
    assert method_lr("cosmos", 1e-3) == 1e-3
    bench = get("multidigits")
    runner = ParetoRunner(bench, out_dir=tmp_path)
    assert runner.method_lr("phn-epo") == 1e-4
    assert runner.method_lr("cosmos") == bench.lr
    assert runner._spec_lr("phn-epo:lr=0.003") == 0.003  # a spec's own lr wins
    assert ParetoRunner(bench, out_dir=tmp_path, lr=0.01).method_lr("phn") == 0.01  # --lr


def test_a_reference_point_no_front_reaches_is_reported(tmp_path, capsys):
    rc = main(["pareto", "multidigits", "--method", "ls", "--rays", "2", "--epochs", "1",
               "--train-subset", "32", "--test-subset", "16", "--out", str(tmp_path),
               "--ref", "0.01,0.01"])
    assert rc == 0
    assert "reference point [0.01, 0.01] is dominated by no point of ls (seed 0)" in (
        capsys.readouterr().out)


def test_fronts_saved_before_the_lr_was_recorded_are_read_at_the_run_lr():
    from polytask.benchmarks.pareto_runner import ParetoRunner

    old = {"settings": {"lr": 0.003}}
    assert ParetoRunner._recorded_lr("phn", old) == 0.003  # reused only if still 0.003
    assert ParetoRunner._recorded_lr("phn:lr=0.0001", old) == 0.0001
    assert ParetoRunner._recorded_lr("phn", {"lr": 1e-4, **old}) == 1e-4


def test_evaluation_rays_follow_the_cosmos_code_and_a_new_margin_re_evaluates(tmp_path):
    """Two-task evaluation rays: angles evenly over [0.1, π/2 − 0.1] as the COSMOS code's
    ``circle_points`` (0 gives the whole quarter circle); a saved conditioned front is
    reused only at the rays it was evaluated at."""
    import math

    import numpy as np

    from polytask.benchmarks import get
    from polytask.benchmarks.pareto_runner import ParetoRunner, test_rays

    rays = test_rays(25, 2).numpy()
    angles = np.linspace(0.1, math.pi / 2 - 0.1, 25)
    expected = np.stack([np.cos(angles), np.sin(angles)], 1)
    np.testing.assert_allclose(rays, expected / expected.sum(1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(test_rays(3, 2, 0.0).numpy(), [[1, 0], [0.5, 0.5], [0, 1]],
                               atol=1e-12)
    bench = get("multidigits")
    runner = ParetoRunner(bench, out_dir=tmp_path, epochs=1, n_test_rays=3, log=lambda _: None)
    runner.run(["cosmos"])
    assert runner._cached_front("cosmos", 0) is not None
    other = ParetoRunner(bench, out_dir=tmp_path, epochs=1, n_test_rays=3, test_ray_margin=0.0,
                         log=lambda _: None)
    assert other._cached_front("cosmos", 0) is None
