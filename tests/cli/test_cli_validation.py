"""The command line rejects nonsense before doing anything, with a one-line error."""

import pytest

import polytask
from polytask.cli import main


@pytest.mark.parametrize("args,match", [
    (["--seeds", "0"], "--seeds must be a positive integer, got 0"),
    (["--epochs", "0"], "--epochs must be a positive integer"),
    (["--batch-size", "0"], "--batch-size must be a positive integer"),
    (["--threads", "0"], "--threads must be a positive integer"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--methods", ""], "--methods names nothing"),
    (["--methods", " , "], "--methods names nothing"),
    (["--arch", ""], "--arch names nothing"),
    (["--first-seed", "-1"], "--first-seed must be >= 0"),
])
def test_nonsense_values_are_one_line_errors(tmp_path, capsys, args, match):
    assert main(["bench", "multidigits", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and err.count("\n") == 0
    assert not any(tmp_path.iterdir())  # nothing trained or written


def test_bad_settings_are_found_before_anything_trains(tmp_path, capsys):
    for methods, match in [("ew,cagrad:c=-1", "'c' must be"),
                           ("ew,cagrad:cc=0.4", "unknown setting 'cc'"),
                           ("weighted:lft=2.0", "'lft' is no task"),
                           ("ew;scalarization:weights=[1,2,3]", "3 values for 2 tasks")]:
        assert main(["bench", "multidigits", "--methods", methods, "--out", str(tmp_path),
                     "--no-progress"]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "baselines").exists() and not (tmp_path / "runs").exists()
    assert main(["bench", "multidigits", "--arch", "mmoe:num_experts=0", "--out",
                 str(tmp_path), "--no-progress"]) == 2
    assert "num_experts" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"polytask {polytask.__version__}"


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "(default: ew)" in out and "(default: hard)" in out and "(default: 1)" in out
    assert "(default: 0)" in out  # --first-seed, filled in by the formatter


def test_list_does_not_cut_descriptions(capsys):
    assert main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.strip().startswith("auto-lambda"))
    assert line.rstrip().endswith("relationships\").")
