"""Pareto HyperNetworks' defining properties on a problem whose front is known.

One shared scalar ``z`` (a ``Linear(1, 1)`` on a constant input) and two regression
tasks with targets 0 and 1: ``L_a = z²``, ``L_b = (1 − z)²``. The front is
``√L_a + √L_b = 1`` for ``z ∈ [0, 1]``; every ray of the positive quadrant meets it, so
PHN-EPO's solution at ``r`` must land on the EPO ray (``r_a L_a = r_b L_b``, ``z =
√r_b / (√r_a + √r_b)``), and PHN-LS's on the minimiser of ``r_a L_a + r_b L_b``
(``z = r_b``). The two targets differ away from ``r = (½, ½)``, so each test tells the
methods apart.
"""

import math

import numpy as np
import pytest
import torch
from torch import nn

from polytask import Regression
from polytask.models import HardSharing
from polytask.pareto import ConditionedFront, hypervolume, train_conditioned
from polytask.training.batches import MultiTaskDataset, batch_loader

RAYS = [[0.2, 0.8], [0.35, 0.65], [0.5, 0.5], [0.65, 0.35], [0.8, 0.2]]


def _tasks():
    return {"a": Regression("a"), "b": Regression("b")}


def _make():
    return HardSharing(
        nn.Linear(1, 1),
        _tasks(),
        heads={"a": nn.Identity(), "b": nn.Identity()},
        encoder_out_features=1,
    )


def _loader():
    x = torch.ones(8, 1)
    targets = {"a": torch.zeros(8), "b": torch.ones(8)}
    return batch_loader(MultiTaskDataset(x, targets), 8, False)


def _front(method):
    torch.manual_seed(0)
    front = train_conditioned(
        _make,
        _tasks(),
        method,
        (1,),
        _loader(),
        400,
        optimizer=lambda groups: torch.optim.Adam(groups, lr=1e-2),
        seed=0,
        model_options={"hidden": 16, "layers": 2, "alpha": 1.0},
    )
    assert isinstance(front, ConditionedFront)
    return front.evaluate(_loader(), RAYS, split="test")


def test_phn_epo_lands_on_each_ray():
    result = _front("phn-epo")
    r = np.asarray(RAYS)
    z = np.sqrt(r[:, 1]) / (np.sqrt(r[:, 0]) + np.sqrt(r[:, 1]))
    exact = np.stack([z**2, (1 - z) ** 2], axis=1)
    # on the EPO ray: r ⊙ L uniform, i.e. the loss vector points along 1/r
    assert np.degrees(result.fidelity()).max() < 2.0
    np.testing.assert_allclose(result.losses, exact, atol=0.02)
    # and on the front
    np.testing.assert_allclose(np.sqrt(result.losses).sum(axis=1), 1.0, atol=0.02)


def test_phn_ls_learns_the_linear_scalarization_front():
    result = _front("phn-ls")
    r = np.asarray(RAYS)
    exact = np.stack([r[:, 1] ** 2, r[:, 0] ** 2], axis=1)  # z = r_b
    # the linear scalarisation's gradient vanishes at its minimiser, so within 0.04
    np.testing.assert_allclose(result.losses, exact, atol=0.04)
    assert result.non_dominated().all()
    true_hv = hypervolume(exact, [1.0, 1.0])
    assert result.hypervolume([1.0, 1.0]) == pytest.approx(true_hv, abs=0.02)
    # PHN-LS misses the EPO rays away from the middle: it is not PHN-EPO in disguise
    assert math.degrees(result.fidelity()[0]) > 10.0
