"""ESMM: pCTCVR = pCTR × pCVR on the entire space; stable logits; the split."""

import pytest
import torch
import torch.nn.functional as F
from _arch_helpers import check_split, mlp

from polytask.errors import PolytaskError
from polytask.models import ESMM
from polytask.models.esmm import product_logit
from polytask.tasks import Binary, Regression

X = torch.randn(6, 6)
TASKS = [Binary("ctr"), Binary("ctcvr")]


def test_ctcvr_probability_is_the_product_and_the_loss_is_the_papers():
    torch.manual_seed(0)
    model = ESMM(mlp(), TASKS)
    out = model(X)
    p_ctr = torch.sigmoid(out["ctr"])
    p_cvr = torch.sigmoid(model.last_cvr_logits)
    assert torch.allclose(torch.sigmoid(out["ctcvr"]), p_ctr * p_cvr, atol=1e-6)
    y = torch.tensor([1.0, 0, 0, 1, 0, 0])
    loss = TASKS[1].loss(out["ctcvr"], y)
    expected = F.binary_cross_entropy((p_ctr * p_cvr).reshape(-1), y)
    assert torch.allclose(loss, expected, atol=1e-5)


def test_product_logit_is_finite_at_extremes():
    a = torch.tensor([60.0, -60.0, 0.0, 30.0], requires_grad=True)
    b = torch.tensor([60.0, 5.0, -80.0, -30.0])
    logit = product_logit(a, b)
    assert bool(torch.isfinite(logit).all())
    logit.sum().backward()
    assert bool(torch.isfinite(a.grad).all())


def test_split_ctcvr_reaches_the_ctr_tower():
    torch.manual_seed(0)
    model = ESMM(mlp(), TASKS)
    check_split(model, X)
    shared = {id(p) for p in model.shared_parameters()}
    assert all(id(p) in shared for p in model.ctr_tower.parameters())
    with_cvr = ESMM(mlp(), TASKS + [Binary("cvr", auxiliary=True)], cvr="cvr")
    check_split(with_cvr, X)
    assert with_cvr(X)["cvr"].shape == (6, 1)


def test_task_declaration_errors():
    with pytest.raises(PolytaskError, match="ctcvr"):
        ESMM(mlp(), [Binary("ctr"), Binary("conv")])
    with pytest.raises(PolytaskError, match="Binary"):
        ESMM(mlp(), [Binary("ctr"), Regression("ctcvr")])
