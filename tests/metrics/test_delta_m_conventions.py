"""The two Δm conventions: every metric equally, or averaged within each task first."""

import pytest

from polytask.errors import PolytaskError
from polytask.metrics import delta_m

BASE = {"seg": {"miou": 0.5}, "normal": {"mean": 20.0, "median": 10.0, "w11": 0.2}}
DIRS = {"seg": {"miou": True}, "normal": {"mean": False, "median": False, "w11": True}}
NEW = {"seg": {"miou": 0.6}, "normal": {"mean": 22.0, "median": 10.0, "w11": 0.2}}


def test_metric_convention_weighs_every_metric_equally():
    # terms: +0.2, -0.1, 0, 0 -> mean over 4 metrics
    assert delta_m(NEW, BASE, DIRS) == pytest.approx(100 * 0.1 / 4)
    assert delta_m(NEW, BASE, DIRS, "metric") == pytest.approx(2.5)


def test_task_convention_averages_within_tasks_first():
    # seg: +0.2; normal: (-0.1 + 0 + 0) / 3 -> mean over 2 tasks
    assert delta_m(NEW, BASE, DIRS, "task") == pytest.approx(100 * (0.2 - 0.1 / 3) / 2)


def test_conventions_agree_when_every_task_has_one_metric():
    base = {"a": {"x": 1.0}, "b": {"y": 2.0}}
    new = {"a": {"x": 1.5}, "b": {"y": 1.0}}
    dirs = {"a": {"x": True}, "b": {"y": False}}
    assert delta_m(new, base, dirs, "task") == pytest.approx(delta_m(new, base, dirs))


def test_unknown_convention_is_named():
    with pytest.raises(PolytaskError, match="convention 'mean'.*metric.*task"):
        delta_m(NEW, BASE, DIRS, "mean")
