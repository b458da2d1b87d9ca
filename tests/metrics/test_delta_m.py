"""Δm on a hand-computed example."""

import pytest

from polytask.errors import PolytaskError
from polytask.metrics import delta_m


def test_delta_m_hand_computed():
    results = {"seg": {"miou": 0.55}, "depth": {"abs_err": 0.40, "rel_err": 0.18}}
    baselines = {"seg": {"miou": 0.50}, "depth": {"abs_err": 0.50, "rel_err": 0.20}}
    directions = {"seg": {"miou": True}, "depth": {"abs_err": False, "rel_err": False}}
    # +10% (higher better), +20% (lower better: 0.4 vs 0.5), +10% -> mean 13.33%
    assert delta_m(results, baselines, directions) == pytest.approx(100 * (0.1 + 0.2 + 0.1) / 3)


def test_delta_m_negative_when_worse():
    assert delta_m({"a": {"acc": 0.9}}, {"a": {"acc": 1.0}}, {"a": {"acc": True}}) == (
        pytest.approx(-10.0)
    )


def test_delta_m_missing_baseline_names_task():
    with pytest.raises(PolytaskError, match="task 'b' metric 'acc'"):
        delta_m({"b": {"acc": 1.0}}, {}, {"b": {"acc": True}})
