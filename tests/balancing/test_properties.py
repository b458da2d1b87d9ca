"""Registry-wide property tests of the gradient aggregators.

Every aggregator registered in :mod:`polytask.balancing` is tested here by being
registered: its class declares its defining properties (``properties``), how its update
transforms under scaling (``scaling``) and whether it draws random numbers (``random``),
and each property is checked on random Jacobians and on every degenerate family (zero
rows, duplicated, opposite, rank-deficient rows, overall scales 1e-8 to 1e8, one row 10⁶
times larger or smaller, float32 and float64), to 1e-6 relative where the property is
defined (float64) and to float32 rounding otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import polytask.balancing as B
from polytask.balancing import GradientAggregator, LossWeighting
from polytask.balancing.aggregation import SolverWarning

AGGREGATORS = sorted(
    n for n in B.available()
    if isinstance(B.method_class(n), type) and issubclass(B.method_class(n), GradientAggregator)
    and not B.method_class(n).requires  # pmtl, epo: tested in tests/pareto
)
PROPERTY_NAMES = {"non_conflicting", "min_norm", "equal_projections", "equal_cosines", "nash",
                  "fair", "cagrad"}

FAMILIES = ["random", "zero_row", "duplicate", "opposite", "rank2", "scale_small",
            "scale_large", "one_large", "one_small", "two_zero_rows"]


def family(kind: str, k: int = 4, p: int = 9, seed: int = 0) -> torch.Tensor:
    """A K×P float64 Jacobian of the named family."""
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(k, p, generator=gen, dtype=torch.float64)
    j[1] = -0.6 * j[0] + 0.4 * j[1]  # a conflicting pair in every family
    if kind == "zero_row":
        j[2] = 0
    elif kind == "two_zero_rows":
        j[2:] = 0
    elif kind == "duplicate":
        j[3] = j[2]
    elif kind == "opposite":
        j[3] = -j[2]
    elif kind == "rank2":
        j = torch.randn(k, 2, generator=gen, dtype=torch.float64) @ j[:2]
    elif kind == "scale_small":
        j = j * 1e-8
    elif kind == "scale_large":
        j = j * 1e8
    elif kind == "one_large":
        j[0] = j[0] * 1e6
    elif kind == "one_small":
        j[2] = j[2] * 1e-6
    return j


def build(name: str, **options):
    cls = B.method_class(name)
    kwargs = {"path": "jacobian"}
    if cls.random:
        kwargs["seed"] = 0
    if name == "cagrad":
        kwargs["rescale"] = 0
    kwargs.update(options)
    return B.get(name, **kwargs)


def run(name: str, j: torch.Tensor, **options):
    m = build(name, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolverWarning)
        d = m.aggregate(j)
    return m, d


def live_rows(j: torch.Tensor) -> torch.Tensor:
    return j.abs().amax(dim=1) > 0


def test_every_aggregator_declares_known_properties():
    assert len(AGGREGATORS) >= 15
    for name in AGGREGATORS:
        cls = B.method_class(name)
        assert set(cls.properties) <= PROPERTY_NAMES, (name, cls.properties)
        assert cls.scaling in ("homogeneous", "invariant", "none")


# -- the defining properties ----------------------------------------------------------------

def floor(j, tol):
    """Rounding level of ``g_iᵀ d`` for an update that is zero up to rounding."""
    return tol**2 * float(j.norm(dim=1).max()) ** 2


def check_non_conflicting(j, d, m, tol):
    size = j.norm(dim=1) * d.norm()
    assert torch.all(j @ d >= -tol * size - floor(j, tol)), (j @ d) / size


def check_min_norm(j, d, m, tol):
    w = m._last_weights.double()
    assert torch.all(w >= -1e-12) and abs(float(w.sum()) - 1) < 1e-9
    assert torch.allclose(d, w @ j, rtol=tol, atol=tol * float(j.abs().max()))
    # KKT of min ‖Σ w g‖ over the simplex: g_iᵀ d ≥ ‖d‖² for every task i
    gap = j @ d - d @ d
    assert torch.all(gap >= -tol * j.norm(dim=1) * d.norm() - floor(j, tol)), gap


def check_equal_projections(j, d, m, tol):
    live = live_rows(j)
    unit = j[live] / j[live].norm(dim=1, keepdim=True)
    proj = unit @ d
    atol = tol * float(d.norm()) + floor(j, tol) / float(j.norm(dim=1).max())
    assert torch.allclose(proj, proj[0].expand_as(proj), rtol=tol, atol=atol)


def check_equal_cosines(j, d, m, tol):
    live = live_rows(j)
    unit = j[live] / j[live].norm(dim=1, keepdim=True)
    ones = torch.ones(int(live.sum()), dtype=torch.float64)
    x = torch.linalg.pinv(unit, rtol=tol * 1e-2) @ ones  # rank at the input's precision
    if float((unit @ x - ones).norm()) > 1e-6 * float(ones.norm()):
        # no direction has equal cosines with every task (e.g. g and −g): the
        # least-squares direction of U⁺1, as in the authors' code
        assert float(d.norm()) == 0 or torch.allclose(
            d / d.norm(), x / x.norm(), atol=1e-4) or float(x.norm()) < 1e-8
        return
    if float(d.norm()) == 0:
        return
    cos = (j[live] @ d) / (j[live].norm(dim=1) * d.norm())
    assert torch.all(cos > 0)
    assert torch.allclose(cos, cos[0].expand_as(cos), rtol=tol, atol=tol)


def check_nash(j, d, m, tol):
    live = live_rows(j)
    if m.extras.get("pareto_stationary"):
        assert torch.all(d == 0)
        return
    a = m._last_weights.double()
    assert torch.allclose(a[live] * (j[live] @ d), torch.ones(int(live.sum()),
                          dtype=torch.float64), rtol=tol)
    assert torch.all(a[~live] == 0)


def check_fair(j, d, m, tol):
    live = live_rows(j)
    if m.extras.get("pareto_stationary"):
        return
    k = j.shape[0]
    w = m._last_weights.double() / k  # the reported weights are K w (authors' scaling)
    assert torch.allclose((j[live] @ d) / k, w[live] ** (-1.0 / m.alpha), rtol=tol)


def check_cagrad(j, d, m, tol):
    g0 = j.mean(0)
    radius = m.c * float(g0.norm())
    assert float((d - g0).norm()) <= radius * (1 + 1e-6) + 1e-300
    worst = float((j @ d).min())
    gen = torch.Generator().manual_seed(1)
    p = j.shape[1]
    scale = float(j.norm(dim=1).max()) * float(g0.norm())
    for _ in range(300):
        u = torch.randn(p, generator=gen, dtype=torch.float64)
        x = g0 + radius * float(torch.rand((), generator=gen)) ** (1 / p) * u / u.norm()
        assert float((j @ x).min()) <= worst + tol * scale


CHECKS = {
    "non_conflicting": check_non_conflicting,
    "min_norm": check_min_norm,
    "equal_projections": check_equal_projections,
    "equal_cosines": check_equal_cosines,
    "nash": check_nash,
    "fair": check_fair,
    "cagrad": check_cagrad,
}
CASES = [(name, prop) for name in AGGREGATORS for prop in B.method_class(name).properties]


@pytest.mark.parametrize("kind", FAMILIES)
@pytest.mark.parametrize("name,prop", CASES)
def test_defining_property_in_float64(name, prop, kind):
    j = family(kind)
    m, d = run(name, j)
    assert torch.isfinite(d).all()
    CHECKS[prop](j, d, m, 1e-6)


@pytest.mark.parametrize("kind", ["random", "zero_row", "duplicate", "opposite", "rank2",
                                  "one_small"])
@pytest.mark.parametrize("name,prop", CASES)
def test_defining_property_in_float32(name, prop, kind):
    j = family(kind).float()
    m, d = run(name, j)
    assert d.dtype == torch.float32 and torch.isfinite(d).all()
    if prop == "equal_cosines" and kind in ("duplicate", "rank2", "opposite"):
        assert float(d.norm()) > 0 or kind == "opposite"  # no lost update in float32
    CHECKS[prop](j.double(), d.double(), m, 1e-3)


# -- symmetries ----------------------------------------------------------------------------

DETERMINISTIC = [n for n in AGGREGATORS if not B.method_class(n).random]


@pytest.mark.parametrize("kind", ["random", "zero_row", "duplicate", "one_large"])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_permutation_equivariance(name, kind):
    j = family(kind)
    perm = torch.tensor([2, 0, 3, 1])
    _, d = run(name, j)
    _, dp = run(name, j[perm])
    assert torch.allclose(dp, d, rtol=1e-6, atol=1e-9 * float(j.abs().max()))


@pytest.mark.parametrize("scale", [1e-8, 1e8])
@pytest.mark.parametrize("name", [n for n in AGGREGATORS
                                  if B.method_class(n).scaling != "none"])
def test_documented_scaling(name, scale):
    j = family("random")
    _, d = run(name, j)
    _, ds = run(name, j * scale)
    factor = scale if B.method_class(name).scaling == "homogeneous" else 1.0
    assert torch.allclose(ds / factor, d, rtol=1e-6, atol=1e-12 * float(d.abs().max()))


# -- regression inputs of issue 9 ----------------------------------------------------------

def test_nash_mtl_update_does_not_follow_the_loss_scale():
    j = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, -0.5, 0.7]], dtype=torch.float64)
    for s in (0.1, 1.0, 10.0):
        for normalize in (True, False):
            m, d = run("nash-mtl", j * s, normalize=normalize)
            a = m._last_weights.double()
            assert torch.allclose(a * ((j * s) @ d), torch.ones(3, dtype=torch.float64),
                                  rtol=1e-8)


@pytest.mark.parametrize("name", ["upgrad", "dualproj"])
@pytest.mark.parametrize("tiny", [0.0, 1e-6, 1e-9])
def test_dual_cone_with_a_zero_or_tiny_task_is_the_exact_projection(name, tiny):
    gen = torch.Generator().manual_seed(3)
    j = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    j[1] = -0.5 * j[0] + 0.2 * j[1]
    j[2] = j[2] * tiny
    m, d = run(name, j)
    w = m._last_weights.double()
    # no weight near 1e15 for a zero task; a tiny task's weight is bounded in effect
    assert float((w * j.norm(dim=1)).abs().max()) < 10.0 * float(j.norm(dim=1).max())
    if tiny == 0.0:
        assert float(w.abs().max()) < 10.0
    # the exact projection(s), by a generic QP solver on the vectors themselves
    from scipy.optimize import minimize

    def project(x0):
        cons = [{"type": "ineq", "fun": lambda x, g=g: float(g @ x) / max(float(np.linalg.norm(g)),
                 1e-300)} for g in j.numpy() if np.linalg.norm(g) > 0]
        res = minimize(lambda x: float(((x - x0) ** 2).sum()), x0, constraints=cons,
                       method="SLSQP", options={"ftol": 1e-15, "maxiter": 500})
        return torch.as_tensor(res.x)

    if name == "dualproj":
        exact = project(j.mean(0).numpy())
    else:
        exact = torch.stack([project(g.numpy()) for g in j]).mean(0)
    assert torch.allclose(d, exact, rtol=1e-5, atol=1e-7 * float(exact.norm()))
    live = live_rows(j)
    assert torch.all(j[live] @ d >= -1e-9 * j[live].norm(dim=1) * d.norm())


@pytest.mark.parametrize("ratio", [1e5, 1e6])
@pytest.mark.parametrize("k", [3, 20, 40])
def test_mgda_with_one_huge_gradient_is_the_min_norm_point(ratio, k):
    gen = torch.Generator().manual_seed(k)
    j = torch.randn(k, 30, generator=gen, dtype=torch.float64)
    j[0] *= ratio
    m, d = run("mgda", j)
    check_min_norm(j, d, m, 1e-6)
    assert float(d.norm()) < 1e-3 * float(j[0].norm())  # not the large gradient itself


def test_mgda_exact_for_many_tasks_by_default():
    from polytask.balancing.aggregation._solvers import min_norm_wolfe

    gen = torch.Generator().manual_seed(5)
    j = torch.randn(40, 64, generator=gen, dtype=torch.float64)
    m, d = run("mgda", j)
    g = (j @ j.T).numpy()
    exact = min_norm_wolfe(g)
    assert float(d @ d) <= (exact @ g @ exact) * (1 + 1e-9)


@pytest.mark.parametrize("name", ["imtl-g", "config", "nash-mtl", "fairgrad"])
def test_a_task_1e6_smaller_stays_live(name):
    j = family("one_small")
    m, d = run(name, j)
    assert float(m._last_weights[2]) != 0.0


def test_cagrad_on_cancelling_gradients_reaches_the_optimum():
    gen = torch.Generator().manual_seed(0)
    g, h = torch.randn(2, 50, generator=gen, dtype=torch.float64)
    h = h - (h @ g) / (g @ g) * g * 0.8  # cos(g, h) small but not 0
    j = torch.stack([g, -g, h]) * 10
    for rescale in (0, 1):
        m, d = run("cagrad", j, rescale=rescale, c=0.5)
        worst = float((j @ d).min())
        assert worst >= -1e-9 * float(j.norm()) ** 2, worst  # the optimum is 0
        check_cagrad(j, d * (1 + 0.25 if rescale else 1), m, 1e-6)


def test_config_float32_linearly_dependent_gradients_give_an_update():
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(2, 100, generator=gen)
    j = torch.stack([base[0], base[1], base[0] + base[1]]).float()
    _, d32 = run("config", j)
    _, d64 = run("config", j.double())
    assert float(d32.norm()) > 0
    assert torch.allclose(d32.double(), d64, rtol=1e-4, atol=1e-4 * float(d64.norm()))


def test_moco_starts_from_zero_tracking_and_softmax_weights_as_the_authors_code():
    gen = torch.Generator().manual_seed(0)
    j = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    m = B.get("moco", normalization="none", path="jacobian")
    d = m.aggregate(j)
    y = 0.5 * j  # Y = 0 − β_1 (0 − J)
    lam = torch.softmax(torch.full((3,), 1 / 3, dtype=torch.float64)
                        - 0.1 * (y @ y.T) @ torch.full((3,), 1 / 3, dtype=torch.float64), 0)
    assert torch.allclose(m.tracked, y) and torch.allclose(d, lam @ y)
    paper = B.get("moco", normalization="none", init="first", lambda_update="projection",
                  path="jacobian")
    paper.aggregate(j)
    assert torch.allclose(paper.tracked, j)


# -- the written gradients ---------------------------------------------------------------------

def tiny_model(k=3, seed=0, dead=()):
    torch.manual_seed(seed)
    shared = torch.nn.Linear(4, 6)
    heads = torch.nn.ModuleList(torch.nn.Linear(6, 1) for _ in range(k))
    x = torch.randn(16, 4)
    y = torch.randn(16, k)
    h = torch.tanh(shared(x))
    losses = {}
    for i, head in enumerate(heads):
        loss = ((head(h).squeeze(-1) - y[:, i]) ** 2).mean()
        losses[f"t{i}"] = loss * 0 if i in dead else loss  # no label: exactly 0
    return shared, heads, losses


@pytest.mark.parametrize("name", AGGREGATORS)
def test_task_gradients_option_gives_weighted_or_raw_head_gradients(name):
    if B.get(name).path == "representation":
        pytest.skip("representation-path methods are tested in test_engine")
    for mode in ("weighted", "raw"):
        shared, heads, losses = tiny_model()
        own = [torch.autograd.grad(losses[f"t{i}"], head.weight, retain_graph=True)[0]
               for i, head in enumerate(heads)]
        kwargs = {"task_gradients": mode}
        if B.method_class(name).random:
            kwargs["seed"] = 0
        m = B.get(name, **kwargs)
        result = m.backward(losses, shared_params=shared.parameters())
        for i, head in enumerate(heads):
            w = 1.0 if mode == "raw" else result.weights[f"t{i}"]
            assert torch.allclose(head.weight.grad, w * own[i], rtol=1e-5, atol=1e-7), mode
    assert B.get(name).task_gradients == B.method_class(name).default_task_gradients


def _loss_weightings():
    names = []
    for n in B.available():
        cls = B.method_class(n)
        if isinstance(cls, type) and issubclass(cls, LossWeighting):
            names.append(n)
    return sorted(names)


WEIGHTINGS = [n for n in _loss_weightings() if n != "auto-lambda"]  # needs a val loader


@pytest.mark.parametrize("name", [n for n in WEIGHTINGS
                                  if B.method_class(n).reports_loss_weights])
def test_loss_weighting_writes_the_gradient_of_its_reported_weights(name):
    shared, heads, losses = tiny_model()
    own = {n: torch.autograd.grad(loss, shared.weight, retain_graph=True)[0]
           for n, loss in losses.items()}
    m = B.get(name)
    m.prepare(list(losses))
    result = m.backward(losses, shared_params=shared.parameters())
    expected = sum(result.weights[n] * own[n] for n in losses)
    assert torch.allclose(shared.weight.grad, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", AGGREGATORS + WEIGHTINGS)
def test_a_task_without_labels_drops_out_with_weight_zero(name):
    cls = B.method_class(name)
    kwargs = {"seed": 0} if getattr(cls, "random", False) or name == "rlw" else {}
    if issubclass(cls, GradientAggregator) and B.get(name).path == "representation":
        kwargs["path"] = "jacobian"
    shared, heads, losses = tiny_model(dead=(1,))
    m = B.get(name, **kwargs)
    m.prepare(list(losses))
    result = m.backward(losses, shared_params=shared.parameters())
    assert result.weights["t1"] == 0.0
    grad = shared.weight.grad.clone()
    assert torch.isfinite(grad).all()
    assert all(abs(v) < 1e6 for v in result.weights.values())
    assert float(grad.norm()) > 0  # the other tasks still move
    # stateless methods: exactly the update without the dead task
    shared2, heads2, losses2 = tiny_model(dead=(1,))
    live = {n: v for n, v in losses2.items() if n != "t1"}
    m2 = B.get(name, **kwargs)
    m2.prepare(list(live))
    result2 = m2.backward(live, shared_params=shared2.parameters())
    if name in ("moco",):  # state over steps: λ carries the dead task's share
        return
    if name not in ("fairgrad",):  # FairGrad's K scaling counts the tasks given
        assert torch.allclose(grad, shared2.weight.grad, rtol=1e-5, atol=1e-8), name
    for n in live:
        scale = 1.5 if name == "fairgrad" else 1.0
        assert abs(result.weights[n] - scale * result2.weights[n]) <= 1e-5 * (
            1 + abs(result.weights[n])), (name, result.weights, result2.weights)
