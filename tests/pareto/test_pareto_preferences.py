"""Preference validation and ray sets."""

import math

import numpy as np
import pytest
import torch

from polytask.pareto import (
    DirichletSampler,
    PreferenceError,
    check_preference,
    circle_rays,
    das_dennis,
    loss_direction,
    preference_of,
    uniform_rays,
)


@pytest.mark.parametrize(
    "pref,match",
    [([0.5, 0.5, 0.0], "3 entries for 2 tasks"), ([-0.1, 1.1], "negative"),
     ([0.0, 0.0], "all zero"), ([float("nan"), 1.0], "non-finite")],
)
def test_bad_preferences_name_the_value(pref, match):
    with pytest.raises(PreferenceError, match=match):
        check_preference(pref, 2)


def test_mapping_preferences():
    assert check_preference({"b": 3, "a": 1}, ["a", "b"]).tolist() == [0.25, 0.75]
    with pytest.raises(PreferenceError, match="unknown"):
        check_preference({"a": 1, "c": 1}, ["a", "b"])


def test_uniform_rays_and_das_dennis():
    r = uniform_rays(5)
    assert r.shape == (5, 2) and torch.allclose(r.sum(1), torch.ones(5, dtype=r.dtype))
    assert r[0].tolist() == [0.0, 1.0] and r[-1].tolist() == [1.0, 0.0]
    for h, k in [(3, 3), (4, 4), (2, 5)]:
        lattice = das_dennis(h, k)
        assert len(lattice) == math.comb(h + k - 1, k - 1)
        assert len({tuple(row) for row in lattice.tolist()}) == len(lattice)
        assert torch.allclose(lattice.sum(1), torch.ones(len(lattice), dtype=lattice.dtype))
        assert torch.allclose(lattice * h, (lattice * h).round())
    assert uniform_rays(10, 3).shape == (10, 3)
    with pytest.raises(PreferenceError):
        uniform_rays(0)


def test_circle_rays_are_pareto_mtls_reference_vectors():
    n = 5
    t = np.linspace(0, np.pi / 2, n)
    expected = np.c_[np.cos(t), np.sin(t)]
    np.testing.assert_allclose(loss_direction(circle_rays(n)).numpy(), expected, atol=1e-12)


def test_loss_direction_round_trip_and_meaning():
    p = torch.tensor([[0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64)
    d = loss_direction(p)
    # p_k d_k is the same for every k (for the first row, no zero)
    prod = p[0] * d[0]
    assert torch.allclose(prod, prod.mean().expand(3))
    assert torch.allclose(d[1], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(preference_of(d[:1]), p[:1])
    with pytest.raises(PreferenceError, match="two or more zero"):
        loss_direction(torch.tensor([1.0, 0.0, 0.0]))


def test_dirichlet_sampler_is_seeded_and_resumable():
    a, b = DirichletSampler(3, 0.2, seed=4), DirichletSampler(3, 0.2, seed=4)
    assert torch.equal(a.sample(5), b.sample(5))
    state = a.state_dict()
    x = a.sample()
    a.load_state_dict(state)
    assert torch.equal(a.sample(), x)
    assert torch.allclose(x.sum(), torch.tensor(1.0))
    with pytest.raises(PreferenceError, match="positive"):
        DirichletSampler(2, [1.0, 0.0])
