"""The engine paths of GradientAggregator: every path gives the same update."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import polytask.balancing as B
from polytask.errors import PolytaskError

GRAMIAN_METHODS = {
    "mgda": {},
    "pcgrad": {"seed": 1},
    "gradvac": {"seed": 1},
    "cagrad": {},
    "imtl-g": {},
    "nash-mtl": {"max_norm": 0.0},
    "aligned-mtl": {},
    "upgrad": {},
    "dualproj": {},
    "config": {},
    "fairgrad": {"max_norm": 0.0},
}


class Tiny(nn.Module):
    """A shared MLP trunk and one linear head per task, in float64."""

    def __init__(self, k: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.trunk = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh())
        self.heads = nn.ModuleList(nn.Linear(6, 1) for _ in range(k))
        self.double()
        self.rep = None

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        self.rep = self.trunk(x)
        return {
            f"t{i}": ((h(self.rep).squeeze(-1) - y[:, i]) ** 2).mean()
            for i, h in enumerate(self.heads)
        }


def data(k: int = 3):
    gen = torch.Generator().manual_seed(42)
    x = torch.randn(16, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(16, k, generator=gen, dtype=torch.float64)
    y[:, 1] = -y[:, 0]  # conflicting targets
    return x, y


def run(name: str, options: dict, model: Tiny, steps: int = 1, use_rep: bool = False):
    model = copy.deepcopy(model)
    torch.manual_seed(7)
    balancer = B.get(name, **options)
    x, y = data(len(model.heads))
    results = []
    for _ in range(steps):
        model.zero_grad()
        losses = model.losses(x, y)
        results.append(
            balancer.backward(
                losses,
                shared_params=model.trunk.parameters(),
                representation=model.rep if use_rep else None,
            )
        )
    grads = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    return grads, results, balancer


ENGINE_VARIANTS = [
    {"path": "jacobian", "strategy": "loop"},
    {"path": "jacobian", "strategy": "batched"},
    {"path": "jacobian", "strategy": "batched", "chunk_size": 2},
    {"path": "gramian", "strategy": "loop"},
    {"path": "gramian", "strategy": "batched"},
    {"path": "gramian", "strategy": "loop", "max_block_numel": 1},  # one parameter at a time
    {"path": "auto", "jacobian_memory_limit": 1},  # forces the Gramian path
    {"path": "gramian", "strategy": "loop", "jacobian_memory_limit": 1},  # products, 1 task
    {"path": "gramian", "strategy": "batched", "chunk_size": 2},  # products, 2 tasks a call
]


@pytest.mark.parametrize("name", sorted(GRAMIAN_METHODS))
def test_every_path_gives_the_same_update(name):
    model = Tiny()
    reference, ref_results, _ = run(
        name, {**GRAMIAN_METHODS[name], **ENGINE_VARIANTS[0]}, model, steps=2
    )
    for variant in ENGINE_VARIANTS[1:]:
        grads, results, _ = run(name, {**GRAMIAN_METHODS[name], **variant}, model, steps=2)
        assert torch.allclose(grads, reference, rtol=1e-6, atol=1e-9), (name, variant)
        assert results[-1].weights == pytest.approx(ref_results[-1].weights, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", ["moco", "graddrop"])
def test_jacobian_methods_agree_across_strategies(name):
    model = Tiny()
    base = {"path": "jacobian"}
    a, _, _ = run(name, {**base, "strategy": "loop"}, model, steps=2)
    b, _, _ = run(name, {**base, "strategy": "batched"}, model, steps=2)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def test_auto_path_picks_the_gramian_only_when_the_jacobian_is_too_big():
    model = Tiny()
    _, _, small = run("mgda", {}, model)
    assert small.resolved_path() == "jacobian"
    x, y = data()
    ctx = small._context(model.losses(x, y), list(model.trunk.parameters()), None, None)
    assert small.resolved_path(ctx) == "jacobian"
    tight = B.get("mgda", jacobian_memory_limit=100)
    assert tight.resolved_path(ctx) == "gramian"
    assert B.get("moco", jacobian_memory_limit=1).resolved_path(ctx) == "jacobian"


def test_shared_parameters_get_the_direction_and_heads_their_weighted_gradient():
    model = Tiny()
    grads, results, balancer = run("mgda", {"path": "jacobian"}, model)
    x, y = data()
    m = copy.deepcopy(model)
    losses = m.losses(x, y)
    shared = list(m.trunk.parameters())
    jac = torch.stack(
        [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, shared, retain_graph=True)])
            for loss in losses.values()
        ]
    )
    w = torch.tensor(list(results[0].weights.values()), dtype=torch.float64)
    expected_shared = w @ jac
    n = expected_shared.numel()
    assert torch.allclose(grads[:n], expected_shared)
    total = sum(wk * loss for wk, loss in zip(w, losses.values()))
    head_grads = torch.autograd.grad(total, list(m.heads.parameters()))
    assert torch.allclose(grads[n:], torch.cat([g.reshape(-1) for g in head_grads]))


def test_representation_path_uses_the_gradients_of_the_representation():
    model = Tiny()
    grads, results, _ = run("mgda-ub", {}, model, use_rep=True)
    x, y = data()
    m = copy.deepcopy(model)
    losses = m.losses(x, y)
    rep_jac = torch.stack(
        [
            torch.autograd.grad(loss, m.rep, retain_graph=True)[0].reshape(-1)
            for loss in losses.values()
        ]
    )
    w = B.get("mgda").weights_from_gramian(rep_jac @ rep_jac.T)
    assert list(results[0].weights.values()) == pytest.approx(w.tolist(), rel=1e-6)
    total = sum(wk * loss for wk, loss in zip(w, losses.values()))
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, list(m.parameters()))])
    assert torch.allclose(grads, expected)


def test_graddrop_representation_path_backpropagates_its_direction():
    model = Tiny()
    grads, _, _ = run("graddrop", {"leak": 1.0}, model, use_rep=True)  # leak 1: plain sum
    x, y = data()
    m = copy.deepcopy(model)
    total = sum(m.losses(x, y).values())
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, list(m.parameters()))])
    assert torch.allclose(grads, expected)


def test_nash_mtl_reuses_its_weights_between_updates():
    model = Tiny()
    _, results, balancer = run(
        "nash-mtl", {"update_weights_every": 3, "max_norm": 0.0}, model, steps=4
    )
    w = [r.weights for r in results]
    assert w[0] == w[1] == w[2]
    assert "solver_iterations" in results[0].extras
    assert "solver_iterations" not in results[1].extras  # no Jacobian, no solve
    assert "solver_iterations" not in results[2].extras
    assert "solver_iterations" in results[3].extras  # recomputed every 3 steps


def test_nash_mtl_clips_the_shared_gradient():
    model = Tiny()
    grads, results, _ = run("nash-mtl", {"max_norm": 1e-3}, model)
    n = sum(p.numel() for p in model.trunk.parameters())
    assert float(grads[:n].norm()) <= 1e-3 * (1 + 1e-6)


def test_rgw_is_one_weighted_backward():
    model = Tiny()
    grads, results, _ = run("rgw", {}, model)
    x, y = data()
    m = copy.deepcopy(model)
    losses = m.losses(x, y)
    w = torch.tensor(list(results[0].weights.values()), dtype=torch.float64)
    total = sum(wk * loss for wk, loss in zip(w, losses.values()))
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(total, list(m.parameters()))])
    assert torch.allclose(grads, expected)


def test_gramian_blocks_match_the_full_gramian():
    from polytask.balancing import engine

    model = Tiny()
    x, y = data()
    losses = list(model.losses(x, y).values())
    params = list(model.trunk.parameters())
    jac = engine.compute_jacobian(losses, params, "loop", True)
    for block in (None, 1, 50):
        gram = engine.compute_gramian(losses, params, "loop", max_block_numel=block)
        assert torch.allclose(gram, jac @ jac.T)
    big = torch.tensor([[1e30, 0.0], [-1e30, 1e-30]], dtype=torch.float32)
    assert torch.isfinite(engine.scaled_gram(big)).all()


@pytest.mark.parametrize(
    "rows",
    [
        [[1.0, 2.0, -3.0], [0.5, -1.0, 4.0]],  # ordinary: the direct float32 product
        [[1.0, 2.0, -3.0], [0.0, 0.0, 0.0]],  # a zero row: exactly zero, not underflow
        [[1e-22, 2e-22, 0.0], [0.0, -1e-22, 1e-22]],  # squared norms underflow float32
        [[1e25, 0.0, 1e25], [-1e25, 1e-20, 0.0]],  # the product overflows float32
    ],
)
def test_scaled_gram_in_float32_matches_float64_to_rounding(rows):
    from polytask.balancing import engine

    j = torch.tensor(rows, dtype=torch.float32)
    exact = j.double() @ j.double().T
    gram = engine.scaled_gram(j)
    assert gram.dtype == torch.float64 and gram.shape == (2, 2)
    assert torch.isfinite(gram).all()
    scale = exact.diagonal()[:, None].sqrt() * exact.diagonal()[None, :].sqrt()
    assert torch.all((gram - exact).abs() <= 1e-6 * scale + 1e-300)
    assert bool((gram.diagonal() > 0).all()) == bool((j != 0).any(1).all())


def test_gramian_by_products_matches_the_full_gramian():
    from polytask.balancing import engine

    model = Tiny()
    x, y = data()
    losses = list(model.losses(x, y).values())
    params = list(model.trunk.parameters())
    jac = engine.compute_jacobian(losses, params, "loop", True)
    expected = jac.double() @ jac.double().T
    for strategy, chunk in [("loop", None), ("loop", 2), ("batched", 2), ("batched", 3)]:
        gram = engine.gramian_by_products(losses, params, strategy, chunk)
        assert torch.allclose(gram, expected, rtol=1e-5, atol=1e-8), (strategy, chunk)
        assert torch.equal(gram, gram.T)
    # the graph is kept for the weighted backward that follows
    sum(losses).backward()


def test_gramian_by_products_keeps_tiny_gradients_and_unreached_tasks():
    from polytask.balancing import engine

    w = torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))
    x = torch.tensor([1e-25, -2e-25, 0.5e-25])
    losses = [(w * x).sum(), (w * w).sum() * 0.0 + (w[0] * 1e-25), torch.zeros(()) * w.sum()]
    gram = engine.gramian_by_products(losses, [w], "loop", None)
    rows = torch.stack(
        [
            x.double(),
            torch.tensor([1e-25, 0.0, 0.0], dtype=torch.float64),
            torch.zeros(3, dtype=torch.float64),
        ]
    )
    assert torch.allclose(gram, rows @ rows.T, rtol=1e-5, atol=0)
    assert gram[0, 0] > 0


def test_gramian_falls_back_to_blocks_when_an_operator_has_no_double_backward():
    from torch.autograd.function import once_differentiable

    from polytask.balancing import engine

    class Square(torch.autograd.Function):
        @staticmethod
        def forward(ctx, v):
            ctx.save_for_backward(v)
            return v * v

        @staticmethod
        @once_differentiable
        def backward(ctx, grad):
            (v,) = ctx.saved_tensors
            return 2 * v * grad

    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    losses = [Square.apply(w).sum(), (w * torch.tensor([3.0, 1.0])).sum()]
    engine._warned_double_backward = False
    with pytest.warns(RuntimeWarning, match="one parameter tensor at a time"):
        gram = engine.compute_gramian(losses, [w], "loop")
    rows = torch.tensor([[2.0, -4.0], [3.0, 1.0]], dtype=torch.float64)
    assert torch.allclose(gram, rows @ rows.T)


def test_stateful_methods_survive_a_state_dict_round_trip():
    model = Tiny()
    for name, options in [
        ("gradvac", {"seed": 3}),
        ("moco", {}),
        ("nash-mtl", {"update_weights_every": 2}),
    ]:
        _, _, trained = run(name, options, model, steps=2)
        fresh = B.get(name, **options)
        fresh.load_state_dict(trained.state_dict())
        for key, value in trained.state_dict().items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(fresh.state_dict()[key], value), (name, key)


def test_bad_configurations_are_clear_errors():
    with pytest.raises(ValueError, match="needs the full Jacobian"):
        B.get("moco", path="gramian")
    with pytest.raises(ValueError, match="unknown path"):
        B.get("mgda", path="fast")
    model = Tiny()
    x, y = data()
    with pytest.raises(PolytaskError, match="representation"):
        B.get("mgda-ub").backward(model.losses(x, y), shared_params=model.trunk.parameters())
