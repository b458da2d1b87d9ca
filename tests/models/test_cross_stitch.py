"""CrossStitch: identity init gives independent columns; paper init; the split."""

import pytest
import torch
from _arch_helpers import check_split, cnn_stages, mlp_stages, tasks3

from polytask.errors import PolytaskError
from polytask.models import CrossStitch
from polytask.models.cross_stitch import stitch_matrix

X = torch.randn(4, 6)


def test_identity_init_gives_independent_columns():
    torch.manual_seed(0)
    model = CrossStitch(mlp_stages, tasks3(), init="identity", out_features=8)
    out = model(X)
    for i, name in enumerate(model.task_names):
        h = X
        for stage in model.columns[i]:
            h = stage(h)
        assert torch.allclose(out[name], model.heads[name](h), atol=1e-6)
        # no gradient flows from task i into another column
        grads = torch.autograd.grad(out[name].sum(), list(model.columns.parameters()),
                                    retain_graph=True, allow_unused=True)
        params = list(model.columns.parameters())
        for p, g in zip(params, grads):
            owner = next(j for j, c in enumerate(model.columns)
                         if any(p is q for q in c.parameters()))
            if owner != i:
                assert g is None or bool((g == 0).all())


def test_paper_init_and_mixing_couples_the_columns():
    assert torch.allclose(stitch_matrix(2, "paper"), torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
    m = stitch_matrix(3, "paper")
    assert torch.allclose(m.sum(1), torch.ones(3)) and m[0, 0] == pytest.approx(0.9)
    torch.manual_seed(0)
    model = CrossStitch(mlp_stages, tasks3(), out_features=8)
    out = model(X)
    g = torch.autograd.grad(out["r"].sum(), list(model.columns[1].parameters()),
                            allow_unused=True)
    assert any(x is not None and x.abs().sum() > 0 for x in g)


def test_split_with_tail_stages_after_the_last_unit():
    torch.manual_seed(0)
    model = CrossStitch(mlp_stages, tasks3(), stitch_after=[0], out_features=8)
    check_split(model, X)
    own = {id(p) for p in model.task_parameters("b")}
    assert all(id(p) in own for p in model.columns[1][2].parameters())
    conv = CrossStitch(cnn_stages, tasks3(), example_input=torch.randn(2, 1, 8, 8))
    check_split(conv, torch.randn(3, 1, 8, 8))


def test_bad_stitch_points():
    with pytest.raises(PolytaskError, match="stitch_after"):
        CrossStitch(mlp_stages, tasks3(), stitch_after=[5], out_features=8)
