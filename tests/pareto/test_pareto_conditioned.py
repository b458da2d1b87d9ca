"""Preference-conditioned models: what each one's construction guarantees, and that the
Trainer trains them through PreferenceFromModel."""

import pytest
import torch
from torch import nn

from polytask import Multiclass
from polytask.models import HardSharing
from polytask.pareto import (
    COSMOS,
    ConditionedFront,
    ParetoHyperNetwork,
    ParetoManifold,
    PreferenceError,
    PreferenceFromModel,
    train_conditioned,
    uniform_rays,
)
from polytask.training import Trainer
from polytask.training.batches import MultiTaskDataset, batch_loader


def _tasks():
    return {"a": Multiclass("a", num_classes=3), "b": Multiclass("b", num_classes=3)}


def _target(tasks=None):
    enc = nn.Sequential(nn.Flatten(), nn.Linear(8, 16), nn.ReLU())
    return HardSharing(enc, tasks or _tasks(), encoder_out_features=16)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, 4, generator=g)
    return x, {"a": (x[:, 0, 0] > 0).long() + (x[:, 0, 1] > 1).long(),
               "b": (x[:, 1, 0] > 0).long() + (x[:, 1, 1] > 1).long()}


def test_pamal_vertices_are_the_weight_sets_and_the_map_is_linear():
    torch.manual_seed(0)
    m = ParetoManifold(_target()).eval()
    x, _ = _data(8)
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    w0, w1 = m.combine(e0), m.combine(e1)
    for n in w0:
        assert not torch.allclose(w0[n], w1[n])  # independently initialised sets
    mid = m.combine(torch.tensor([0.3, 0.7]))
    for n in mid:
        torch.testing.assert_close(mid[n], 0.3 * w0[n] + 0.7 * w1[n])
    # at a vertex, the model is a plain network with that weight set
    plain = _target()
    plain.load_state_dict({n: w0[n] for n in w0})
    torch.testing.assert_close(m(x, e0)["a"], plain(x)["a"])


def test_phn_generates_weights_that_depend_on_the_preference():
    torch.manual_seed(0)
    target = _target()
    m = ParetoHyperNetwork(target, hidden=8)
    a, b = m.generate(torch.tensor([0.9, 0.1])), m.generate(torch.tensor([0.1, 0.9]))
    assert set(a) == {n for n, _ in target.named_parameters()}
    assert any(not torch.allclose(a[n], b[n]) for n in a)
    assert not any(p.requires_grad for p in target.parameters())  # the target's own are unused
    x, _ = _data(4)
    out = m(x, [0.5, 0.5])
    assert out["a"].shape == (4, 3)
    out["a"].sum().backward()
    assert all(p.grad is not None for p in m.ray_mlp.parameters())


def test_cosmos_starts_as_its_target_and_then_reads_the_preference():
    torch.manual_seed(0)
    target = _target()
    m = COSMOS(target, (2, 4)).eval()  # embed_init="zeros", the default
    x, _ = _data(4)
    torch.testing.assert_close(m(x, [0.2, 0.8])["a"], target(x)["a"])  # E = 0 at start
    default = COSMOS(_target(), (2, 4), embed_init="default").eval()
    assert not torch.allclose(default(x, [0.2, 0.8])["a"], default(x, [0.8, 0.2])["a"])
    with torch.no_grad():
        m.embed.weight.normal_()
    assert not torch.allclose(m(x, [0.2, 0.8])["a"], m(x, [0.8, 0.2])["a"])
    with pytest.raises(PreferenceError, match="3 entries"):
        m(x, [0.2, 0.3, 0.5])


def test_training_mode_samples_and_eval_mode_uses_the_eval_preference():
    m = COSMOS(_target(), (2, 4), alpha=1.0, seed=3)
    x, _ = _data(4)
    m.train()
    m(x)
    p1 = m.preference.clone()
    m(x)
    assert not torch.equal(p1, m.preference)
    m.eval()
    m(x)
    assert torch.equal(m.preference, torch.tensor([0.5, 0.5]))


@pytest.mark.parametrize("method", ["cosmos", "phn", "phn-epo", "pamal"])
def test_train_conditioned_with_the_trainer_and_evaluate_a_front(method):
    if method == "phn-epo":
        pytest.importorskip("scipy")
    x, y = _data(96)
    loader = batch_loader(MultiTaskDataset(x, y), 32, True)
    front = train_conditioned(_target, _tasks(), method, (2, 4), loader, epochs=2, seed=0)
    assert isinstance(front, ConditionedFront)
    result = front.evaluate(batch_loader(MultiTaskDataset(x, y), 64, False), uniform_rays(3),
                            split="val")
    assert result.losses.shape == (3, 2) and (result.losses > 0).all()
    assert result.split == "val"


def test_preference_from_model_feeds_the_model_preference_to_the_balancer():
    from polytask import balancing

    model = COSMOS(_target(), (2, 4))
    inner = balancing.get("linear")
    wrapper = PreferenceFromModel(inner)
    trainer = Trainer(model, _tasks(), wrapper, progress=False)
    x, y = _data(32)
    trainer.fit(batch_loader(MultiTaskDataset(x, y), 32, False), 1)
    torch.testing.assert_close(inner.pref.float(), model.preference.float())
    state = wrapper.state_dict()  # checkpointable: no model inside
    assert all("target" not in k for k in state)
    with pytest.raises(Exception, match="takes no preference"):
        PreferenceFromModel(balancing.get("ew"))


def test_phn_with_a_one_element_tensor_is_finite():
    from polytask import Binary

    tasks = {"a": Binary("a"), "b": Binary("b")}
    target = HardSharing(nn.Sequential(nn.Flatten(), nn.Linear(8, 4)), tasks,
                         encoder_out_features=4)
    m = ParetoHyperNetwork(target, hidden=8)
    assert all(torch.isfinite(w).all() for w in m.generate(torch.tensor([0.5, 0.5])).values())
