"""Scalarizations: a preference vector turns K losses into one number.

Each is a pure function of the loss vector ``L`` (K), the preference ``p`` (K, on the
simplex) and an ideal point ``z`` (K, default 0: losses are non-negative), and a
:class:`~polytask.balancing.LossWeighting` balancer registered by name, so that
``polytask.balancing.get("tchebycheff", pref=[0.3, 0.7])`` trains one point of the
front in any loop. The balancer's task weights are ``∂s/∂L`` at the current losses, so
one backward of ``Σ_k w_k L_k`` gives exactly the gradient of ``s(L)``.

Registered names: ``linear``, ``tchebycheff``, ``augmented-tchebycheff``,
``modified-tchebycheff``, ``stch-paper`` (the smooth Tchebycheff formula of the paper),
``stch-reference`` (the same class as ``stch``: the authors' code's stateful variant on
log-losses with a warm-up and a nadir estimate, :class:`~polytask.balancing.weighting.
SmoothTchebycheff`), ``pbi`` and ``cosmos``.

Extra cost per step of every scalarization here: none (a K-vector function and its
gradient).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from ..balancing import engine, register
from ..balancing.base import BalanceContext, LossWeighting
from ..balancing.weighting import SmoothTchebycheff
from ..errors import PolytaskError
from .preferences import PreferenceLike, check_preference, loss_direction

# -- the pure functions ---------------------------------------------------------------


def linear(losses: Tensor, pref: Tensor, ideal: Tensor | None = None) -> Tensor:
    """``Σ_k p_k (L_k − z_k)``: reaches only the convex part of the front."""
    return (pref * _shift(losses, ideal)).sum()


def tchebycheff(losses: Tensor, pref: Tensor, ideal: Tensor | None = None) -> Tensor:
    """``max_k p_k (L_k − z_k)`` (Bowman 1976; Miettinen, Nonlinear Multiobjective
    Optimization, 1999): every Pareto-optimal point is the minimiser for some ``p``; the
    minimiser lies where ``p_k (L_k − z_k)`` is equal, i.e. on the ray ``L − z ∝ 1/p``."""
    return (pref * _shift(losses, ideal)).max()


def augmented_tchebycheff(
    losses: Tensor, pref: Tensor, ideal: Tensor | None = None, rho: float = 0.01
) -> Tensor:
    """``max_k p_k (L_k − z_k) + ρ Σ_k p_k (L_k − z_k)`` (Steuer & Choo, Math. Program.
    1983): the small linear term removes weakly Pareto-optimal minimisers."""
    d = pref * _shift(losses, ideal)
    return d.max() + rho * d.sum()


def modified_tchebycheff(
    losses: Tensor, pref: Tensor, ideal: Tensor | None = None, rho: float = 0.01
) -> Tensor:
    """``max_k p_k [(L_k − z_k) + ρ Σ_j (L_j − z_j)]`` (Kaliszewski, Control Cybern.
    1987): like the augmented form, and every properly Pareto-optimal point is reachable."""
    d = _shift(losses, ideal)
    return (pref * (d + rho * d.sum())).max()


def smooth_tchebycheff(
    losses: Tensor, pref: Tensor, ideal: Tensor | None = None, mu: float = 0.1
) -> Tensor:
    """The paper's smooth Tchebycheff ``μ log Σ_k exp(p_k (L_k − z_k) / μ)`` (Lin, Zhang,
    Yang, Zhang & Zhang, ICML 2024, eq. 8): a smooth upper bound of Tchebycheff within
    ``μ log K``; ``μ → 0`` gives Tchebycheff."""
    return mu * torch.logsumexp(pref * _shift(losses, ideal) / mu, dim=0)


def pbi(
    losses: Tensor, pref: Tensor, ideal: Tensor | None = None, theta: float = 5.0
) -> Tensor:
    """Penalty-based boundary intersection (Zhang & Li, MOEA/D, IEEE TEC 2007):
    ``d1 + θ d2`` with ``d1`` the length of ``L − z`` along the unit target direction
    ``u`` of ``p`` and ``d2`` its distance to that ray. The direction is polytask's
    (:func:`~polytask.pareto.preferences.loss_direction`, ``u ∝ 1/p``)."""
    u = loss_direction(pref.detach().double().cpu()).to(losses)
    d = _shift(losses, ideal)
    d1 = d @ u
    d2 = torch.linalg.vector_norm(d - d1 * u)
    return d1 + theta * d2


def cosmos(
    losses: Tensor, pref: Tensor, ideal: Tensor | None = None, lamda: float = 2.0,
    ray: str = "preference",
) -> Tensor:
    """COSMOS's objective (Ruchte & Grabocka, ICDM 2021): ``Σ p_k L_k − λ cos(L, r)``.

    ``ray="preference"`` (the paper and the authors' code): ``r = p`` itself;
    ``ray="direction"``: ``r`` is polytask's target direction ``∝ 1/p``, which pulls the
    loss vector the same way as the linear term."""
    if ray not in ("preference", "direction"):
        raise PolytaskError(f"cosmos ray must be 'preference' or 'direction', got {ray!r}")
    d = _shift(losses, ideal)
    r = pref if ray == "preference" else loss_direction(pref.detach().double().cpu()).to(losses)
    cos = torch.nn.functional.cosine_similarity(d, r.to(d), dim=0, eps=1e-8)
    return (pref * d).sum() - lamda * cos


def _shift(losses: Tensor, ideal: Tensor | None) -> Tensor:
    return losses if ideal is None else losses - ideal.to(losses)


# -- the balancers ----------------------------------------------------------------------


class Scalarization(LossWeighting):
    """A scalarization with a preference, as a loss weighting.

    ``pref``: the preference (a K-sequence, ``{task: weight}`` or a tensor; default
    equal), normalised to sum 1; it may be reassigned between steps (``balancer.pref =
    ...``), which is how preference-conditioned training uses it. ``ideal``: the ideal
    point ``z`` (default 0). Weights reported: ``∂s/∂L_k``.
    """

    #: the pure function; keyword hyper-parameters are taken from ``self.options``
    function: ClassVar[Callable[..., Tensor]]

    def __init__(self, pref: PreferenceLike | None = None, ideal: PreferenceLike | None = None,
                 **options: Any) -> None:
        super().__init__()
        self.pref = pref
        self.ideal = None if ideal is None else [float(v) for v in ideal]
        self.options = options

    def preference(self, names: list[str]) -> Tensor:
        """The current preference for tasks ``names`` (checked)."""
        k = len(names)
        if self.pref is None:
            return torch.full((k,), 1.0 / k, dtype=torch.float64)
        return check_preference(self.pref, names if isinstance(self.pref, dict) else k)

    def value(self, losses: Tensor, names: list[str]) -> Tensor:
        """The scalarized loss of the K-vector ``losses``."""
        pref = self.preference(names).to(losses)
        ideal = None
        if self.ideal is not None:
            if len(self.ideal) != len(names):
                raise PolytaskError(f"ideal point {self.ideal} has {len(self.ideal)} values "
                                    f"for tasks {names}")
            ideal = torch.tensor(self.ideal).to(losses)
        return type(self).function(losses, pref, ideal, **self.options)

    def combine(self, ctx: BalanceContext) -> tuple[Tensor, Tensor]:
        # A dead task (loss exactly 0: no label in the batch) drops out: the
        # scalarization runs on the live tasks with their preference renormalised,
        # as it would for a problem without that task; the dead task's weight is 0.
        idx = torch.nonzero(ctx.live.cpu()).flatten()
        w = torch.zeros(len(ctx.names), dtype=torch.float64)
        pref = self.preference(ctx.names).double()[idx]
        if idx.numel() and float(pref.sum()) > 0:
            if self.ideal is not None and len(self.ideal) != len(ctx.names):
                raise PolytaskError(f"ideal point {self.ideal} has {len(self.ideal)} values "
                                    f"for tasks {ctx.names}")
            ideal = None if self.ideal is None else torch.tensor(self.ideal).double()[idx]
            sub = ctx.loss_values.detach().double().cpu()[idx].requires_grad_(True)
            with torch.enable_grad():
                s = type(self).function(sub, pref / pref.sum(), ideal, **self.options)
                (w[idx],) = engine.gradient(s, [sub])
        w = w.to(device=ctx.losses[0].device, dtype=ctx.losses[0].dtype)
        total = sum(wk * loss for wk, loss in zip(w, ctx.losses))
        return total, w


def _scalarization(name: str, fn: Callable[..., Tensor], doc: str) -> type[Scalarization]:
    cls = type(
        fn.__name__.title().replace("_", "") + "Scalarization",
        (Scalarization,),
        {"function": staticmethod(fn), "__doc__": doc, "__module__": __name__},
    )
    register(name)(cls)
    return cls


LinearPreference = _scalarization(
    "linear", linear,
    "Linear scalarization with a preference on the simplex (weights sum 1, unlike "
    "``scalarization``, whose weights sum K). " + (linear.__doc__ or ""),
)
Tchebycheff = _scalarization("tchebycheff", tchebycheff, tchebycheff.__doc__ or "")
AugmentedTchebycheff = _scalarization(
    "augmented-tchebycheff", augmented_tchebycheff, augmented_tchebycheff.__doc__ or ""
)
ModifiedTchebycheff = _scalarization(
    "modified-tchebycheff", modified_tchebycheff, modified_tchebycheff.__doc__ or ""
)
SmoothTchebycheffPaper = _scalarization(
    "stch-paper", smooth_tchebycheff,
    (smooth_tchebycheff.__doc__ or "") + " Stateless: no warm-up, no nadir, raw losses "
    "(the authors' code's stateful variant on log-losses is ``stch-reference``).",
)
PBI = _scalarization("pbi", pbi, pbi.__doc__ or "")
COSMOSObjective = _scalarization("cosmos", cosmos, cosmos.__doc__ or "")
register("stch-reference")(SmoothTchebycheff)

#: name -> pure function, for loops that scalarize by hand
FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "linear": linear,
    "tchebycheff": tchebycheff,
    "augmented-tchebycheff": augmented_tchebycheff,
    "modified-tchebycheff": modified_tchebycheff,
    "stch-paper": smooth_tchebycheff,
    "pbi": pbi,
    "cosmos": cosmos,
}
