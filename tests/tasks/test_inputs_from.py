"""Estimates as features, auxiliary tasks, gradient reversal and input reconstruction."""

import pytest
import torch
from torch import nn

from polytask import HardSharing
from polytask.errors import PolytaskError
from polytask.models.layers import GradientReversal, with_adversarial_head
from polytask.tasks import Binary, Multiclass, Reconstruction, Regression, add_input_target
from polytask.tasks.graph import prediction_order


def encoder():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU())


def test_head_reads_other_tasks_predictions_in_order():
    tasks = [
        Regression("price", inputs_from=("ctr", "cvr"), detach_inputs=False),
        Binary("cvr", inputs_from=("ctr",)),
        Binary("ctr"),
    ]
    assert prediction_order({t.name: t for t in tasks}) == ["ctr", "cvr", "price"]
    m = HardSharing(encoder(), tasks, encoder_out_features=6)
    assert m.heads["price"][1].in_features == 6 + 2 and m.heads["cvr"][1].in_features == 7
    x = torch.randn(5, 4)
    out = m(x)
    assert list(out) == ["price", "cvr", "ctr"]
    rep = m.encoder(x)
    ctr = torch.sigmoid(out["ctr"])
    expected = m.heads["cvr"](torch.cat([rep, ctr], 1))
    assert torch.allclose(out["cvr"], expected)
    # detach_inputs: cvr's loss does not reach ctr's head; price's (not detached) does
    out["cvr"].sum().backward(retain_graph=True)
    assert m.heads["ctr"][1].weight.grad is None
    out["price"].sum().backward()
    assert m.heads["ctr"][1].weight.grad is not None


def test_cycles_and_unknown_names_are_named():
    with pytest.raises(PolytaskError, match="cycle: a -> b -> a|cycle: b -> a -> b"):
        HardSharing(encoder(), [Binary("a", inputs_from=("b",)), Binary("b", inputs_from=("a",))],
                    encoder_out_features=6)
    with pytest.raises(PolytaskError, match="unknown task 'zz'"):
        HardSharing(encoder(), [Binary("a", inputs_from=("zz",))], encoder_out_features=6)
    with pytest.raises(PolytaskError, match="itself"):
        HardSharing(encoder(), [Binary("a", inputs_from="a")], encoder_out_features=6)


def test_gradient_reversal_flips_the_shared_gradient():
    x = torch.randn(3, 2, requires_grad=True)
    GradientReversal(0.5)(x).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.5))
    task = with_adversarial_head(Multiclass("domain", num_classes=3, auxiliary=True), scale=1.0)
    assert task.auxiliary and task.num_classes == 3
    m = HardSharing(encoder(), [task, Binary("y")], encoder_out_features=6)
    plain = HardSharing(encoder(), [Multiclass("domain", num_classes=3), Binary("y")],
                        encoder_out_features=6)
    plain.load_state_dict({k.replace("heads.domain.1.1.", "heads.domain.1."): v
                           for k, v in m.state_dict().items()})
    xb = torch.randn(8, 4)
    target = torch.randint(0, 3, (8,))
    for model in (m, plain):
        model.domain_loss = task.loss(model(xb)["domain"], target)
        model.domain_loss.backward()
    enc_rev = m.encoder[0].weight.grad
    enc_plain = plain.encoder[0].weight.grad
    assert torch.allclose(enc_rev, -enc_plain, atol=1e-6)  # the encoder unlearns the domain
    assert torch.allclose(m.heads["domain"][1][1].weight.grad, plain.heads["domain"][1].weight.grad)


def test_reconstruction_is_an_auxiliary_input_regression():
    task = Reconstruction("recon", dim=4)
    assert task.auxiliary and task.kind == "reconstruction"
    x = torch.randn(5, 2, 2)
    targets = add_input_target(x, {"y": torch.zeros(5)}, "recon")
    assert targets["recon"].shape == (5, 4)
    assert task.loss(x.reshape(5, 4), targets["recon"]).item() == 0.0
