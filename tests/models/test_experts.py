"""MMoE, DSelect-k, CGC and PLE: gates, the parameter split, PLE(1 level) == CGC."""

import pytest
import torch
from _arch_helpers import check_split, mlp, tasks3
from torch import nn

from polytask import balancing
from polytask.balancing.penalty import Regularized, attach
from polytask.errors import PolytaskError
from polytask.models import CGC, PLE, DSelectK, MMoE
from polytask.models.experts import DSelectGate, smooth_step

X = torch.randn(5, 6)


def test_mmoe_gate_weights_sum_to_one_per_sample_and_task():
    torch.manual_seed(0)
    model = MMoE(mlp, tasks3(), num_experts=4, in_features=6)
    out = model(X)
    assert set(out) == {"r", "b", "m"} and out["m"].shape == (5, 3)
    for name, w in model.last_gate_weights.items():
        assert w.shape == (5, 4), name
        assert torch.allclose(w.sum(dim=1), torch.ones(5)), name
        assert bool((w >= 0).all())
    # the gates differ per task (one gate per task, not one shared gate)
    assert not torch.allclose(model.last_gate_weights["r"], model.last_gate_weights["b"])


def test_mmoe_output_is_the_gated_mixture_of_experts():
    torch.manual_seed(1)
    model = MMoE(mlp, tasks3(), num_experts=3, in_features=6)
    out = model(X)
    experts = torch.stack([e(X) for e in model.experts], dim=1)
    g = model.gates["b"](X)
    expected = model.heads["b"]((g[:, :, None] * experts).sum(1))
    assert torch.allclose(out["b"], expected, atol=1e-6)
    assert model.shared_representation.shape == (5, 3, 8)


@pytest.mark.parametrize(
    "build",
    [
        lambda: MMoE(mlp, tasks3(), num_experts=3, in_features=6),
        lambda: DSelectK(mlp, tasks3(), num_experts=4, num_nonzeros=2, in_features=6),
        lambda: CGC(mlp, tasks3(), num_shared_experts=2, num_task_experts=1, in_features=6),
        lambda: PLE(mlp, tasks3(), num_levels=2, in_features=6),
        lambda: PLE(mlp, tasks3(), num_levels=3, num_shared_experts=1, num_task_experts=2,
                    in_features=6),
    ],
)
def test_split_covers_all_parameters_and_is_faithful(build):
    torch.manual_seed(0)
    check_split(build(), X)


def test_ple_with_one_level_equals_cgc():
    torch.manual_seed(3)
    ple = PLE(mlp, tasks3(), num_levels=1, num_shared_experts=2, num_task_experts=2,
              in_features=6)
    torch.manual_seed(3)
    cgc = CGC(mlp, tasks3(), num_shared_experts=2, num_task_experts=2, in_features=6)
    assert list(ple.state_dict()) == list(cgc.state_dict())
    assert ple.levels[0].shared_gate is None
    a, b = ple(X), cgc(X)
    for name in a:
        assert torch.equal(a[name], b[name])
    # CGC: a task's own experts and gate are its own; shared experts are shared
    own = {id(p) for p in cgc.task_parameters("r")}
    assert all(id(p) in own for p in cgc.levels[0].task_experts["r"].parameters())
    assert cgc.shared_representation.shape == (5, 2, 8)


def test_ple_lower_levels_mix_all_experts_through_the_shared_gate():
    torch.manual_seed(0)
    model = PLE(mlp, tasks3(), num_levels=2, in_features=6)
    assert model.levels[0].shared_gate is not None and model.levels[1].shared_gate is None
    shared = {id(p) for p in model.shared_parameters()}
    # level-1 task experts feed the shared gate: shared; last-level ones: task-specific
    assert all(id(p) in shared for p in model.levels[0].task_experts["r"].parameters())
    assert not any(id(p) in shared for p in model.levels[1].task_experts["r"].parameters())
    assert model.shared_representation is None


def test_smooth_step_is_zero_one_outside_and_cubic_inside():
    t = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    assert torch.allclose(smooth_step(t, 1.0), torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]))


def test_dselect_gate_sums_to_one_and_saturated_selects_exactly_k_experts():
    torch.manual_seed(0)
    gate = DSelectGate(6, num_experts=8, k=2, gamma=1.0, per_example=False)
    w = gate(X)
    assert torch.allclose(w.sum(1), torch.ones(5), atol=1e-6)
    with torch.no_grad():  # binary codes 101 (=5) and 010 (=2)
        gate.z.copy_(torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]]))
    w = gate(X)
    assert torch.allclose(w.sum(1), torch.ones(5))
    nonzero = (w[0] > 0).nonzero().flatten().tolist()
    assert nonzero == [2, 5]
    assert float(gate.regularization().detach()) == pytest.approx(0.0, abs=1e-4)


def test_dselect_k_entropy_penalty_goes_through_the_balancer():
    torch.manual_seed(0)
    model = DSelectK(mlp, tasks3(), num_experts=4, num_nonzeros=2, in_features=6,
                     entropy_weight=1.0)
    balancer = attach(balancing.get("ew"), model)
    assert isinstance(balancer, Regularized)
    out = model(X)
    losses = {k: v.float().pow(2).mean() for k, v in out.items()}
    result = balancer.backward(losses)
    assert result.extras["penalty"] > 0
    gate_z = model.gates["r"].z.weight
    assert gate_z.grad is not None and gate_z.grad.abs().sum() > 0


def test_dselect_non_power_of_two_adds_the_mass_penalty():
    torch.manual_seed(0)
    gate = DSelectGate(6, num_experts=3, k=1, gamma=1.0, per_example=True)
    gate(X)
    assert float(gate.regularization().detach()) > 0


def test_bad_arguments_name_the_problem():
    with pytest.raises(PolytaskError, match="in_features"):
        MMoE(mlp, tasks3(), num_experts=2)
    with pytest.raises(PolytaskError, match="num_nonzeros"):
        DSelectK(mlp, tasks3(), num_experts=2, num_nonzeros=3, in_features=6)
    with pytest.raises(PolytaskError, match="num_experts"):
        MMoE(mlp, tasks3(), num_experts=0, in_features=6)


def test_experts_train():
    torch.manual_seed(0)
    model = PLE(lambda: nn.Sequential(nn.Linear(6, 8), nn.ReLU()), tasks3(), in_features=6,
                expert_out_features=8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    y = torch.randn(5, 1)
    first = None
    for _ in range(30):
        loss = (model(X)["r"] - y).pow(2).mean()
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < first
