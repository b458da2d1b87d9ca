"""The two-task toy problem and ``polytask toy``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from polytask.cli import main
from polytask.errors import PolytaskError
from polytask.toy import pareto_front, run_toy, toy_losses


def test_the_two_losses_conflict_and_the_front_is_non_dominated():
    x = torch.tensor([0.0, 5.0], requires_grad=True)
    f1, f2 = toy_losses(x)
    g1, = torch.autograd.grad(f1, x, retain_graph=True)
    g2, = torch.autograd.grad(f2, x)
    assert float(g1 @ g2) < 0  # conflicting valleys
    front = pareto_front(100)
    assert np.all(np.diff(front[:, 0]) >= 0) and np.all(np.diff(front[:, 1]) < 0)


def test_mgda_ends_near_a_pareto_stationary_point():
    result = run_toy(["mgda"], starts=[(-7.5, -0.5)], steps=300, lr=0.05)
    t = result.trajectories[0]
    assert t.points.shape[1] == 2 and np.isfinite(t.points).all()
    assert t.stationarity < 0.05
    assert "| mgda |" in result.table()


def test_cli_writes_the_png(tmp_path, capsys):
    out = tmp_path / "toy.png"
    code = main(["toy", "--methods", "ew", "pcgrad", "--steps", "20", "--starts", "0,0",
                 "--out", str(out)])
    assert code == 0 and out.exists() and out.stat().st_size > 1000
    assert "| pcgrad |" in capsys.readouterr().out


def test_unknown_methods_are_named():
    with pytest.raises(PolytaskError, match="nope"):
        run_toy(["nope"], steps=1)
