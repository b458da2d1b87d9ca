"""Sluice: identity α and last-layer β give independent columns; subspace mixing; split."""

import pytest
import torch
from _arch_helpers import assert_independent_columns, check_split, mlp_stages, tasks3

from polytask.errors import ShapeMismatchError
from polytask.models import Sluice

X = torch.randn(4, 6)


def test_identity_alpha_and_last_layer_beta_are_independent_columns():
    torch.manual_seed(0)
    model = Sluice(mlp_stages, tasks3(), alpha_init="identity", out_features=8)
    assert_independent_columns(model, X)


def test_alpha_mixes_subspaces_across_tasks():
    torch.manual_seed(0)
    model = Sluice(mlp_stages, tasks3(), alpha_init="identity", num_subspaces=2,
                   mix_after=[0], out_features=8)
    with torch.no_grad():  # swap subspace 0 of task r with subspace 0 of task b
        a = model.alphas[0]
        a.zero_()
        perm = [2, 1, 0, 3, 4, 5]
        a[torch.arange(6), torch.tensor(perm)] = 1.0
    h = [model.columns[i][0](X) for i in range(3)]
    mixed = model._mix(h, model.alphas[0], 0)
    assert torch.allclose(mixed[0][:, :4], h[1][:, :4])
    assert torch.allclose(mixed[0][:, 4:], h[0][:, 4:])


def test_beta_layer_skips_and_orthogonality_penalty():
    torch.manual_seed(0)
    model = Sluice(mlp_stages, tasks3(), example_input=torch.randn(2, 6),
                   orthogonality_weight=1.0)
    assert model.skip_from == [0, 1, 2]
    with torch.no_grad():
        model.betas["r"].copy_(torch.tensor([1.0, 0.0, 0.0]))
    model.train()
    out = model(X)
    reg = model.regularization()
    assert reg is not None and float(reg.detach()) > 0
    g = torch.autograd.grad(out["r"].sum(), list(model.columns[0][2].parameters()),
                            allow_unused=True)
    assert all(x is None or float(x.abs().sum()) == 0 for x in g)  # r reads layer 0 only


def test_split():
    torch.manual_seed(0)
    check_split(Sluice(mlp_stages, tasks3(), mix_after=[0, 1], out_features=8), X)


def test_subspaces_must_divide_channels():
    model = Sluice(mlp_stages, tasks3(), num_subspaces=3, out_features=8)
    with pytest.raises(ShapeMismatchError, match="num_subspaces"):
        model(X)
