"""Affinity estimators: against independent references, and leaving the model alone."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from polytask.errors import PolytaskError
from polytask.relations import AffinityRecorder, gradient_similarity, lookahead_affinity

TASKS = ("a", "b", "c")


class Net(nn.Module):
    """A shared trunk with BatchNorm and dropout, one linear head per task."""

    def __init__(self):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2))
        self.heads = nn.ModuleDict({t: nn.Linear(8, 1) for t in TASKS})

    def forward(self, x):
        h = self.trunk(x)
        return {t: head(h).squeeze(-1) for t, head in self.heads.items()}

    def shared_parameters(self):
        return self.trunk.parameters()


def _setup(seed=0):
    torch.manual_seed(seed)
    net = Net()
    x = torch.randn(16, 4)
    y = {t: torch.randn(16) for t in TASKS}

    def loss_of_batch(forward):
        out = forward(x)
        return {t: ((out[t] - y[t]) ** 2).mean() for t in TASKS}

    return net, x, y, loss_of_batch


def test_gradient_similarity_matches_per_task_autograd():
    net, _, _, loss_of_batch = _setup()
    losses = loss_of_batch(net)
    shared = list(net.shared_parameters())
    grads = [torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses[t], shared,
                                                                    retain_graph=True)])
             for t in TASKS]
    g = torch.stack(grads).double()
    inner = gradient_similarity(losses, shared, "inner")
    np.testing.assert_allclose(inner, (g @ g.T).numpy(), rtol=1e-5, atol=1e-7)
    cosine = gradient_similarity(losses, shared, "cosine")
    n = g.norm(dim=1)
    np.testing.assert_allclose(cosine, (g @ g.T / torch.outer(n, n)).numpy(), rtol=1e-5,
                               atol=1e-6)
    sum(losses.values()).backward()  # the graph is kept for the real backward


def _state(net, optimizer):
    return (copy.deepcopy(net.state_dict()), copy.deepcopy(optimizer.state_dict()),
            [None if p.grad is None else p.grad.clone() for p in net.parameters()])


def _assert_same(before, after):
    for key, value in before[0].items():
        assert torch.equal(value, after[0][key]), key
    assert str(before[1]) == str(after[1])
    for g0, g1 in zip(before[2], after[2]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1)


def test_tag_is_the_loss_change_after_the_optimizers_own_step():
    """Z_{i→j} = 1 − L_j(after the real momentum-SGD step on task i's shared gradient)
    / L_j(now): checked against a copy of model and optimizer that takes that step."""
    net, x, y, loss_of_batch = _setup()
    net.eval()  # deterministic forward for the reference (no dropout, running stats)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    loss = sum(loss_of_batch(net).values())  # one real step: momentum buffers exist
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    losses = loss_of_batch(net)
    shared = list(net.shared_parameters())
    before = _state(net, optimizer)
    sources, z = lookahead_affinity(net, loss_of_batch, losses, shared, optimizer=optimizer,
                                    sources=[("a",), ("b",), ("c",), ("a", "b")])
    _assert_same(before, _state(net, optimizer))
    for s, group in enumerate(sources):
        ref_net, ref_opt = copy.deepcopy((net, optimizer))
        ref_shared = list(ref_net.shared_parameters())
        ref_losses = loss_of_batch(ref_net)
        grads = torch.autograd.grad(sum(ref_losses[t] for t in group), ref_shared)
        for p in ref_net.parameters():
            p.grad = None  # task-specific parameters do not move
        for p, g in zip(ref_shared, grads):
            p.grad = g
        ref_opt.step()
        with torch.no_grad():
            after = loss_of_batch(ref_net)
        expected = [1 - float(after[t]) / float(losses[t].detach()) for t in TASKS]
        np.testing.assert_allclose(z[s], expected, rtol=1e-5, atol=1e-7)


def test_lookahead_leaves_model_buffers_optimizer_and_rng_alone():
    net, x, y, loss_of_batch = _setup()
    net.train()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    sum(loss_of_batch(net).values()).backward()
    optimizer.step()
    losses = loss_of_batch(net)  # leaves .grad from the step in place
    before = _state(net, optimizer)
    rng = torch.random.get_rng_state()
    lookahead_affinity(net, loss_of_batch, losses, list(net.shared_parameters()),
                       optimizer=optimizer)
    _assert_same(before, _state(net, optimizer))  # BatchNorm running stats included
    assert torch.equal(rng, torch.random.get_rng_state())


def test_recorder_averages_steps_and_keeps_epochs():
    net, x, y, loss_of_batch = _setup()
    recorder = AffinityRecorder(TASKS, "tag", every=2, lr=0.05, groups=[("a", "b")])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05)
    tables = []
    for _epoch in range(2):
        for _ in range(3):
            losses = loss_of_batch(net)
            table = recorder.record(losses, net.shared_parameters(), net, loss_of_batch,
                                    optimizer)
            if table is not None:
                tables.append(table)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
        recorder.end_epoch()
    result = recorder.result(note="x")
    assert result.steps == len(tables) == 3  # steps 0, 2, 4 of 6
    np.testing.assert_allclose(result.values, np.mean(tables, axis=0))
    assert len(result.history) == 2 and result.lr == 0.05
    assert ("a", "b") in result.group_values and result.info["note"] == "x"


def test_recorder_errors_name_the_problem():
    with pytest.raises(PolytaskError, match="unknown affinity estimator"):
        AffinityRecorder(TASKS, "nope")
    with pytest.raises(PolytaskError, match="unknown"):
        AffinityRecorder(TASKS, "tag", groups=[("a", "zz")])
    net, _, _, loss_of_batch = _setup()
    recorder = AffinityRecorder(TASKS, "cosine", every=1)
    losses = loss_of_batch(net)
    with pytest.raises(PolytaskError, match="lack tasks"):
        recorder.record({"a": losses["a"], "b": losses["b"]}, net.shared_parameters())
    with pytest.raises(PolytaskError, match="no step was recorded"):
        AffinityRecorder(TASKS, "cosine").result()
