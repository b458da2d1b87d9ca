"""Each aggregation method's defining property, on hand-made Jacobians."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

import polytask.balancing as B
from polytask.balancing.aggregation._common import task_order
from polytask.balancing.aggregation._solvers import min_norm_frank_wolfe, min_norm_wolfe


@pytest.fixture(autouse=True)
def _float64_default():
    """Hand-made Jacobians in float64; the default dtype is restored for other tests."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def conflicting(k: int, p: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    j = torch.randn(k, p, generator=gen, dtype=torch.float64)
    j[1] = -0.8 * j[0] + 0.3 * j[1]  # make sure some pair conflicts
    return j


def brute_min_norm(j: torch.Tensor) -> float:
    g = (j @ j.T).numpy()
    k = g.shape[0]
    best = np.inf
    for start in np.eye(k).tolist() + [np.full(k, 1 / k).tolist()]:
        res = minimize(lambda w: w @ g @ w, np.array(start), method="SLSQP",
                       bounds=[(0, 1)] * k,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
                       options={"ftol": 1e-15, "maxiter": 500})
        best = min(best, float(res.fun))
    return best


# -- MGDA -----------------------------------------------------------------------------------

@pytest.mark.parametrize("k,seed", [(2, 0), (3, 1), (5, 2), (8, 3)])
def test_mgda_is_the_min_norm_point_of_the_convex_hull(k, seed):
    j = conflicting(k, 12, seed)
    m = B.get("mgda")
    d = m.aggregate(j)
    w = m._last_weights
    assert torch.all(w >= -1e-12) and abs(float(w.sum()) - 1) < 1e-9
    assert torch.allclose(d, w @ j)
    assert float(d @ d) <= brute_min_norm(j) + 1e-9
    # orthogonal-or-better: every task improves at least by ‖d‖²
    assert torch.all(j @ d >= float(d @ d) - 1e-9)


def test_mgda_is_zero_at_a_pareto_stationary_point():
    j = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]])
    d = B.get("mgda").aggregate(j)
    assert torch.allclose(d, torch.zeros(2), atol=1e-12)


def test_mgda_two_task_closed_form():
    j = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = B.get("mgda").aggregate(j)
    assert torch.allclose(d, torch.tensor([0.5, 0.5]))
    j = torch.tensor([[1.0, 0.0], [2.0, 1.0]])  # the hull's min-norm point is the vertex g1
    assert torch.allclose(B.get("mgda").aggregate(j), torch.tensor([1.0, 0.0]))


def test_mgda_frank_wolfe_agrees_with_exact_for_many_tasks():
    j = conflicting(40, 64, 5)
    g = (j @ j.T).numpy()
    exact, fw = min_norm_wolfe(g), min_norm_frank_wolfe(g, max_iter=5000, tol=1e-10)
    assert exact @ g @ exact <= fw @ g @ fw + 1e-12  # the exact one is the minimum
    assert fw @ g @ fw <= 1.01 * (exact @ g @ exact)  # FW converges sublinearly
    d = B.get("mgda").aggregate(j)  # auto: Frank-Wolfe at K = 40
    assert float(d @ d) <= 1.05 * float(exact @ g @ exact) + 1e-9


def test_mgda_l2_normalization_is_mgda_on_unit_gradients():
    j = conflicting(3, 6, 4) * torch.tensor([[1.0], [10.0], [0.1]])
    unit = j / j.norm(dim=1, keepdim=True)
    d_unit = B.get("mgda").aggregate(unit)
    d = B.get("mgda", normalization="l2", weights_on="normalized").aggregate(j)
    assert torch.allclose(d, d_unit, atol=1e-9)
    # the authors' code: the solver's weights on the raw losses
    m = B.get("mgda", normalization="l2")
    d_raw = m.aggregate(j)
    w = m._last_weights
    assert torch.allclose(d_raw, w @ j, atol=1e-9) and abs(float(w.sum()) - 1) < 1e-9


# -- PCGrad and GradVac ------------------------------------------------------------------------

def test_pcgrad_removes_exactly_the_conflicting_component_for_two_tasks():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    d = B.get("pcgrad", seed=0).aggregate(torch.stack([g1, g2]))
    g1p = g1 - (g1 @ g2) / (g2 @ g2) * g2
    g2p = g2 - (g2 @ g1) / (g1 @ g1) * g1
    assert torch.allclose(d, g1p + g2p)
    assert abs(float(g1p @ g2)) < 1e-12 and abs(float(g2p @ g1)) < 1e-12


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    j = torch.tensor([[1.0, 0.5, 0.0], [0.2, 1.0, 0.1], [0.0, 0.3, 1.0]])
    assert torch.allclose(B.get("pcgrad").aggregate(j), j.sum(0))


def reference_pcgrad(j: torch.Tensor, order: np.ndarray) -> torch.Tensor:
    out = []
    for i in range(j.shape[0]):
        gi = j[i].clone()
        for jj in order[i]:
            dot = gi @ j[jj]
            if dot < 0:
                gi = gi - dot / (j[jj] @ j[jj]) * j[jj]
        out.append(gi)
    return torch.stack(out).sum(0)


def test_pcgrad_on_the_gramian_equals_sequential_projection_of_vectors():
    j = conflicting(5, 9, 7)
    order = task_order(np.random.default_rng(3), 5)
    d = B.get("pcgrad", seed=3).aggregate(j)
    assert torch.allclose(d, reference_pcgrad(j, order), atol=1e-10)


def test_gradvac_with_zero_targets_is_pcgrad_and_tracks_the_similarity():
    j = conflicting(4, 10, 8)
    vac = B.get("gradvac", seed=5, beta=0.5)
    assert torch.allclose(vac.aggregate(j), B.get("pcgrad", seed=5).aggregate(j), atol=1e-10)
    assert vac.targets.abs().sum() > 0  # the EMA moved


def test_gradvac_raises_the_cosine_to_its_target():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])  # cos = 0 < target
    vac = B.get("gradvac", seed=0, beta=0.0)
    vac.targets = torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=torch.float64)
    d = vac.aggregate(torch.stack([g1, g2]))
    w = vac._last_weights
    # g1' = g1 + c g2 with cos(g1', g2) = 0.5; the same for g2'; d = g1' + g2'
    c = float(w[1] - 1.0)
    g1p = g1 + c * g2
    assert abs(float(g1p @ g2 / g1p.norm()) - 0.5) < 1e-10
    assert torch.allclose(d, torch.tensor([1.0 + c, 1.0 + c]))


# -- CAGrad -------------------------------------------------------------------------------

def test_cagrad_with_c_zero_is_the_mean():
    j = conflicting(4, 7, 9)
    assert torch.allclose(B.get("cagrad", c=0.0).aggregate(j), j.mean(0))


@pytest.mark.parametrize("c", [0.2, 0.5, 0.9])
def test_cagrad_maximises_the_worst_improvement_in_the_ball(c):
    j = conflicting(3, 6, 10)
    d = B.get("cagrad", c=c, rescale=0).aggregate(j)
    g0 = j.mean(0)
    radius = c * float(g0.norm())
    assert float((d - g0).norm()) <= radius * (1 + 1e-6)
    worst = float((j @ d).min())
    gen = torch.Generator().manual_seed(0)
    for _ in range(2000):
        u = torch.randn(6, generator=gen)
        x = g0 + radius * float(torch.rand((), generator=gen)) ** (1 / 6) * u / u.norm()
        assert float((j @ x).min()) <= worst + 1e-6
    scaled = B.get("cagrad", c=c).aggregate(j)  # default rescale=1
    assert torch.allclose(scaled, d / (1 + c**2), atol=1e-9)


# -- IMTL-G, ConFIG, Aligned-MTL ------------------------------------------------------------------

def test_imtlg_has_equal_projections_on_the_unit_gradients():
    j = conflicting(4, 8, 11) * torch.tensor([[1.0], [5.0], [0.2], [2.0]])
    m = B.get("imtl-g")
    d = m.aggregate(j)
    proj = (j / j.norm(dim=1, keepdim=True)) @ d
    assert torch.allclose(proj, proj[0].expand(4), rtol=1e-8)
    assert abs(float(m._last_weights.sum()) - 1.0) < 1e-9


def test_config_gives_equal_positive_cosines_and_projection_length():
    j = conflicting(3, 8, 12) * torch.tensor([[1.0], [4.0], [0.3]])
    d = B.get("config").aggregate(j)
    cos = (j @ d) / (j.norm(dim=1) * d.norm())
    assert torch.all(cos > 0)
    assert torch.allclose(cos, cos[0].expand(3), rtol=1e-8)
    unit = d / d.norm()
    assert abs(float(d.norm()) - float((j @ unit).sum())) < 1e-9


def test_aligned_mtl_makes_the_gradient_system_perfectly_conditioned():
    j = conflicting(4, 10, 13) * torch.tensor([[1.0], [3.0], [0.5], [2.0]])
    m = B.get("aligned-mtl")
    d = m.aggregate(j)
    bmat = torch.as_tensor(m.balance_matrix((j @ j.T).numpy()))
    sv = torch.linalg.svdvals(bmat @ j)
    sigma_min = torch.linalg.svdvals(j).min()
    assert torch.allclose(sv, sigma_min.expand(4), rtol=1e-8)
    assert torch.allclose(d, (bmat @ j).sum(0))


# -- UPGrad, DualProj ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_upgrad_never_conflicts_and_projects_exactly(seed):
    j = conflicting(5, 6, seed)
    m = B.get("upgrad")
    d = m.aggregate(j)
    assert torch.all(j @ d >= -1e-9)
    from polytask.balancing.aggregation._solvers import dual_cone_weights

    g = (j @ j.T).numpy()
    v = torch.as_tensor(dual_cone_weights(g, np.eye(5)))
    for i in range(5):  # KKT of the projection of g_i onto {x : J x >= 0}
        x = v[i] @ j
        s = v[i] - torch.eye(5)[i]
        assert torch.all(s >= -1e-12) and torch.all(j @ x >= -1e-9)
        assert abs(float(s @ (j @ x))) < 1e-7
    assert torch.allclose(d, v.mean(0) @ j)


def test_upgrad_and_dualproj_keep_the_mean_when_nothing_conflicts():
    j = torch.tensor([[1.0, 0.2, 0.0], [0.3, 1.0, 0.0], [0.0, 0.1, 2.0]])
    assert torch.allclose(B.get("upgrad").aggregate(j), j.mean(0))
    assert torch.allclose(B.get("dualproj").aggregate(j), j.mean(0))


def test_dual_cone_rows_without_conflict_skip_the_solve_and_stay_optimal():
    """Rows whose ``Jᵀ u`` conflicts with no task are answered ``v = u`` without the
    factorisation; the others still solve the projection; every row satisfies KKT."""
    from polytask.balancing.aggregation._solvers import dual_cone_weights

    j = torch.tensor([[1.0, 0.0, 0.0, 0.5], [0.2, 1.0, 0.0, 0.0], [0.3, -1.5, 0.4, 0.0]],
                     dtype=torch.float64)  # task 0 conflicts with nobody; 1 and 2 do
    g = (j @ j.T).numpy()
    v = torch.as_tensor(dual_cone_weights(g, np.eye(3)))
    assert torch.equal(v[0], torch.eye(3, dtype=torch.float64)[0])
    assert not torch.equal(v[1], torch.eye(3, dtype=torch.float64)[1])
    for i in range(3):
        x = v[i] @ j
        s = v[i] - torch.eye(3, dtype=torch.float64)[i]
        assert torch.all(s >= -1e-12) and torch.all(j @ x >= -1e-9)
        assert abs(float(s @ (j @ x))) < 1e-9


def test_dualproj_never_conflicts():
    j = conflicting(4, 5, 21)
    assert torch.all(j @ B.get("dualproj").aggregate(j) >= -1e-9)


# -- Nash-MTL, FairGrad ------------------------------------------------------------------------

def test_nash_mtl_solves_the_bargaining_equation():
    j = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, -0.5, 0.7]])
    m = B.get("nash-mtl", normalize=False)
    d = m.aggregate(j)
    a = m._last_weights
    assert torch.all(a > 0)
    assert torch.allclose((j @ d) * a, torch.ones(3), rtol=1e-8)
    m = B.get("nash-mtl")  # the authors normalise G but keep the factor: G α = 1/α
    d = m.aggregate(j)
    a = m._last_weights
    assert torch.allclose((j @ d) * a, torch.ones(3), rtol=1e-8)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_fairgrad_solves_the_alpha_fair_equation(alpha):
    j = torch.tensor([[1.0, 0.2, 0.0], [0.1, 2.0, 0.0], [0.0, -0.5, 0.7]])
    m = B.get("fairgrad", alpha=alpha, scale_by_tasks=False)
    d = m.aggregate(j)
    w = m._last_weights
    assert torch.allclose(j @ d, w ** (-1.0 / alpha), rtol=1e-7)
    scaled = B.get("fairgrad", alpha=alpha)  # the authors' code: K times the update
    assert torch.allclose(scaled.aggregate(j), 3 * d, rtol=1e-9)


# -- MoCo, RGW, GradDrop -------------------------------------------------------------------------

def test_moco_tracks_gradients_and_steps_the_weights():
    j1, j2 = conflicting(3, 5, 30), conflicting(3, 5, 31)
    m = B.get("moco", normalization="none", init="first", lambda_update="projection")
    d1 = m.aggregate(j1)
    lam = torch.full((3,), 1 / 3) - 0.1 * (j1 @ j1.T) @ torch.full((3,), 1 / 3)
    from polytask.balancing.aggregation._solvers import project_simplex

    lam = torch.as_tensor(project_simplex(lam.numpy()))
    assert torch.allclose(d1, lam @ j1)
    m.aggregate(j2)
    y = j1 - 0.5 / 2**0.5 * (j1 - j2)
    assert torch.allclose(m.tracked, y)


def test_moco_loss_normalization_scales_each_gradient_to_its_loss():
    j = conflicting(3, 5, 32)
    m = B.get("moco", init="first")  # the authors' code: unit gradient times the loss
    m.current_losses = torch.tensor([0.5, 2.0, 1.0])
    m.aggregate(j)
    assert torch.allclose(m.tracked.norm(dim=1), torch.tensor([0.5, 2.0, 1.0]), rtol=1e-6)
    bare = B.get("moco", init="first")  # no losses known: unit gradients
    bare.aggregate(j)
    assert torch.allclose(bare.tracked.norm(dim=1), torch.ones(3), rtol=1e-6)


def test_rgw_draws_positive_weights_summing_to_one():
    torch.manual_seed(0)
    ws = torch.stack([B.get("rgw").draw(5) for _ in range(400)])
    assert torch.all(ws > 0) and torch.allclose(ws.sum(1), torch.ones(400))
    assert torch.allclose(ws.mean(0), torch.full((5,), 0.2), atol=0.03)
    j = conflicting(5, 4)
    m = B.get("rgw")
    assert torch.allclose(m.aggregate(j), m._last_weights @ j)


def test_graddrop_keeps_one_sign_per_element():
    torch.manual_seed(0)
    j = torch.tensor([[1.0, -2.0, 3.0, 0.5], [2.0, 1.0, -1.0, 0.5], [0.5, 1.0, -4.0, 0.0]])
    pos = j.clamp(min=0).sum(0)
    neg = j.clamp(max=0).sum(0)
    for _ in range(20):
        d = B.get("graddrop", path="jacobian").aggregate(j)
        assert torch.all((d == pos) | (d == neg))
        assert d[0] == pos[0] and d[3] == pos[3]  # sign-consistent elements pass whole
    assert torch.allclose(B.get("graddrop", path="jacobian", leak=1.0).aggregate(j), j.sum(0))


def test_graddrop_equals_the_papers_explicit_mask_with_the_same_draws():
    """The fused per-coordinate rule is the paper's: P = ½(1 + Σg/Σ|g|), keep g_i > 0
    where P > U and g_i < 0 where P < U (U shared over tasks), leak on the rest; an
    all-zero column gives 0."""
    g = torch.Generator().manual_seed(1)
    j = torch.randn(4, 300, generator=g)
    j[:, :7] = 0.0
    j[1:, 7:12] = 0.0
    for leak in (0.0, 0.3):
        torch.manual_seed(5)
        d = B.get("graddrop", path="jacobian", leak=leak).aggregate(j)
        torch.manual_seed(5)
        absolute = j.abs().sum(0)
        purity = torch.where(absolute > 0, 0.5 * (1 + j.sum(0) / absolute.clamp_min(1e-38)),
                             torch.full((300,), 0.5))
        u = torch.rand(300)
        mask = ((purity > u) & (j > 0)) | ((purity < u) & (j < 0))
        expected = ((leak + (1 - leak) * mask.float()) * j).sum(0)
        assert torch.allclose(d, expected, atol=1e-6)


def test_graddrop_on_the_representation_uses_the_sign_corrected_batch_sum():
    torch.manual_seed(0)
    m = B.get("graddrop")
    act = torch.tensor([[1.0, -1.0], [2.0, 3.0]])  # batch 2, features 2
    # task gradients at A, per sample; feature 0: both tasks agree after the sign fix
    j = torch.tensor([[1.0, 1.0, 1.0, -2.0], [2.0, -1.0, 0.5, 1.0]])
    m.current_activation = act
    d = m.aggregate(j).reshape(2, 2)
    per = j.reshape(2, 2, 2)
    assert torch.allclose(d[:, 0], per[:, :, 0].sum(0))
    signed = (per * act.sign()).sum(1)[:, 1]  # feature 1: [-3, 2], signs disagree
    assert signed[0] < 0 < signed[1]
    assert torch.equal(d[:, 1], per[0, :, 1]) or torch.equal(d[:, 1], per[1, :, 1])


def test_imtl_g_two_task_closed_form_equals_the_general_solve():
    """K = 2 takes a closed form; it equals the least-squares solve of K ≥ 3's path on
    random, opposite and badly scaled pairs, and leaves zero or parallel pairs to it."""
    from polytask.balancing.aggregation import imtl

    m = B.get("imtl-g")
    g = torch.Generator().manual_seed(3)
    pairs = [torch.randn(2, 50, generator=g, dtype=torch.float64) for _ in range(20)]
    base = torch.randn(50, generator=g, dtype=torch.float64)
    pairs += [torch.stack([base, -2 * base + 1e-3 * torch.randn(50, generator=g,
                                                                 dtype=torch.float64)]),
              torch.stack([1e-6 * base, torch.randn(50, generator=g, dtype=torch.float64)])]
    for j in pairs:
        gram = j @ j.T
        fast = imtl._two_task_weights(gram)
        assert fast is not None
        original = imtl._two_task_weights
        imtl._two_task_weights = lambda _: None  # the general path
        try:
            general = m.weights_from_gramian(gram)
        finally:
            imtl._two_task_weights = original
        assert torch.allclose(fast, general, rtol=1e-9, atol=1e-12)
    for j in (torch.stack([base, 3 * base]), torch.stack([base, torch.zeros(50).double()])):
        assert imtl._two_task_weights(j @ j.T) is None


def test_imtl_g_lu_path_equals_least_squares_and_declines_near_singular_systems():
    """The LU solve is taken only when the condition-number bound proves the system far
    from the least-squares rank cut; there it equals ``lstsq``. Duplicated, dependent or
    sum-degenerate systems go to ``lstsq`` (the minimum-norm solution)."""
    import numpy as np

    from polytask.balancing.aggregation import imtl

    rng = np.random.default_rng(0)
    for k in (3, 5, 10, 20, 40):
        for _ in range(10):
            a = rng.standard_normal((k, k))
            rhs = rng.standard_normal(k)
            lu = imtl._solve_well_conditioned(a, rhs)
            assert lu is not None
            ref = np.linalg.lstsq(a, rhs, rcond=imtl._RCOND)[0]
            assert np.allclose(lu, ref, rtol=1e-8, atol=1e-10)
    a = rng.standard_normal((6, 6))
    a[3] = a[1]  # exactly dependent rows
    assert imtl._solve_well_conditioned(a, np.ones(6)) is None
    a[3] = a[1] + 1e-13 * rng.standard_normal(6)  # dependent up to rounding
    assert imtl._solve_well_conditioned(a, np.ones(6)) is None
    assert imtl._solve_well_conditioned(np.zeros((4, 4)), np.ones(4)) is None
    # duplicated task gradients: the minimum-norm weights split evenly, as before
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 40, generator=g, dtype=torch.float64)
    j = torch.cat([base, base[:1]])
    w = B.get("imtl-g").weights_from_gramian(j @ j.T)
    assert torch.allclose(w[0], w[3], rtol=1e-9)


def test_dual_cone_two_task_closed_form_satisfies_kkt_and_matches_nnls():
    """K = 2 projections take a closed form; on random, opposite and badly scaled pairs
    every row satisfies the KKT conditions of ``min vᵀGv, v ≥ u`` (sufficient for this
    convex problem): ``v ≥ u``, ``G v ≥ 0`` and ``(v − u)ᵀ G v = 0``; and its update
    ``Jᵀ v`` equals an independent NNLS solve on the raw rows, ``min_{s ≥ 0}
    ‖Jᵀ(u + s)‖`` (SciPy), which is unique even where ``v`` is not."""
    from scipy.optimize import nnls

    from polytask.balancing.aggregation._solvers import dual_cone_weights

    gen = torch.Generator().manual_seed(5)
    base = torch.randn(30, generator=gen, dtype=torch.float64)
    pairs = [torch.randn(2, 30, generator=gen, dtype=torch.float64) for _ in range(30)]
    pairs += [torch.stack([base, -base]), torch.stack([base, -3 * base + 0.1]),
              torch.stack([1e-6 * base, -base + torch.randn(30, generator=gen,
                                                            dtype=torch.float64)])]
    u = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    conflicting_rows = 0
    for j in pairs:
        g = (j @ j.T).numpy()
        v = dual_cone_weights(g, u)
        jt = j.T.numpy()
        for row, lower in zip(v, u):
            gv = g @ row
            scale = np.sqrt(np.diag(g)) * np.abs(row) @ np.sqrt(np.diag(g))
            assert np.all(row >= lower - 1e-12)
            assert np.all(gv >= -1e-9 * scale)
            assert abs((row - lower) @ gv) <= 1e-9 * np.abs(row - lower).sum() * scale.max()
            s, _ = nnls(jt, -(jt @ lower))
            conflicting_rows += bool((s > 0).any())
            np.testing.assert_allclose(jt @ row, jt @ (lower + s), rtol=1e-7,
                                       atol=1e-9 * np.abs(jt).max() * np.abs(lower + s).sum())
    assert conflicting_rows > 20  # the closed form itself was exercised, not only v = u
