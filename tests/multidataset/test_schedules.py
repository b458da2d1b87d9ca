"""Sampling schedules: each one's defining distribution, and bad parameters."""

import math

import pytest
import torch

from polytask.errors import PolytaskError, UnknownNameError
from polytask.multidataset import schedules

SIZES = [1000, 100, 10]
NAMES = ["big", "mid", "small"]
TASKS_OF = {"big": ("a",), "mid": ("b",), "small": ("c", "d")}


def bound(spec, **kwargs):
    return schedules.get(spec, **kwargs).bind(NAMES, SIZES, TASKS_OF)


def test_registry_lists_every_schedule():
    names = set(schedules.available())
    assert {"uniform", "proportional", "temperature", "annealed", "round_robin",
            "dynamic"} <= names
    with pytest.raises(UnknownNameError, match="available: .*proportional"):
        schedules.get("nope")


def test_uniform_and_proportional():
    assert torch.allclose(bound("uniform").probabilities(0), torch.full((3,), 1 / 3).double())
    p = bound("proportional").probabilities(0)
    assert torch.allclose(p, torch.tensor(SIZES).double() / sum(SIZES))
    capped = bound("proportional:cap=100").probabilities(0)
    assert torch.allclose(capped, torch.tensor([100, 100, 10]).double() / 210)


def test_temperature_interpolates_between_proportional_and_uniform():
    t1 = bound("temperature:T=1").probabilities(0)
    assert torch.allclose(t1, bound("proportional").probabilities(0))
    t2 = bound("temperature", temperature=2.0).probabilities(0)
    expected = torch.tensor([math.sqrt(n) for n in SIZES]).double()
    assert torch.allclose(t2, expected / expected.sum())
    hot = bound("temperature:T=1e6").probabilities(0)
    assert torch.allclose(hot, torch.full((3,), 1 / 3).double(), atol=1e-4)


@pytest.mark.parametrize("bad", [0, -1.0, 0.0])
def test_temperature_must_be_positive(bad):
    with pytest.raises(PolytaskError, match="temperature must be > 0"):
        schedules.get("temperature", temperature=bad)


def test_annealed_goes_from_proportional_to_alpha_min():
    s = bound("annealed:epochs=5")
    assert torch.allclose(s.probabilities(0), bound("proportional").probabilities(0))
    last = torch.tensor([n**0.2 for n in SIZES]).double()
    assert torch.allclose(s.probabilities(4), last / last.sum())
    assert s.alpha(2) == pytest.approx(1 - 0.8 * 2 / 4)  # Stickland & Murray's formula
    small = [float(s.probabilities(e)[2]) for e in range(5)]
    assert small == sorted(small)  # the small dataset is drawn more and more often
    with pytest.raises(PolytaskError, match="epochs"):
        schedules.get("annealed", epochs=0)


def test_round_robin_cycles():
    s = bound("round_robin")
    gen = torch.Generator().manual_seed(0)
    assert [s.choose(i, 0, gen) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]


def test_dynamic_favours_the_dataset_furthest_from_its_reference():
    s = bound("dynamic", reference={"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}, tau=0.5)
    assert torch.allclose(s.probabilities(0), torch.full((3,), 1 / 3).double())
    s.update({"a": 1.0, "b": 2.0, "c": 1.5, "d": 1.5})  # gaps 0, 1, 0.5
    p = s.probabilities(1)
    assert p[1] > p[2] > p[0]
    expected = torch.softmax(torch.tensor([0.0, 1.0, 0.5]).double() / 0.5, dim=0)
    assert torch.allclose(p, expected)
    with pytest.raises(PolytaskError, match="tau must be > 0"):
        schedules.get("dynamic", tau=0)


def test_dynamic_without_reference_uses_progress_since_the_first_loss():
    s = bound("dynamic", tau=1.0)
    s.update({"a": 2.0, "b": 2.0, "c": 2.0, "d": 2.0})
    s.update({"a": 0.5, "b": 2.0, "c": 1.0, "d": 1.0})  # a progressed most, b not at all
    p = s.probabilities(1)
    assert p[1] > p[2] > p[0]


def test_dynamic_names_a_task_missing_from_the_reference():
    s = bound("dynamic", reference={"a": 1.0})
    s.update({"a": 1.0, "b": 1.0})
    with pytest.raises(PolytaskError, match="no reference loss for task 'b'"):
        s.probabilities(0)
