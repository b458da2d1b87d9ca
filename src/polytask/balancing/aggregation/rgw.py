"""RGW: random gradient weighting."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ..base import BalanceContext, GradientAggregator
from ..registry import register

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


@register("rgw")
class RGW(GradientAggregator):
    """Random gradient weighting (Lin et al., TMLR 2022, "Reasonable Effectiveness of
    Random Weighting: A Litmus Test for Multi-Task Learning").

    Each step draws weights ``λ`` at random and updates with ``Σ_k λ_k g_k``. Default:
    ``λ = softmax(z)``, ``z ~ N(0, I)`` (the paper's main choice); also
    ``"uniform"`` (softmax of U(0,1)), ``"dirichlet"`` (Dir(1)) and ``"bernoulli"``
    (each task on with probability ½, at least one, normalised).

    Since ``Σ_k λ_k ∇_θ L_k = ∇_θ Σ_k λ_k L_k``, the update needs no Jacobian: one
    backward of the weighted loss gives it on every path. Extra cost per step: none.
    Degenerate inputs: the update is a convex combination of the rows, finite
    whenever they are.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "distribution": [params.Options(DISTRIBUTIONS)],
    }

    gramian_based = True

    def __init__(self, distribution: str = "normal", **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown RGW distribution {distribution!r}; use {DISTRIBUTIONS}")
        self.distribution = distribution

    def draw(self, k: int) -> Tensor:
        """K random weights summing to one."""
        if self.distribution == "normal":
            return torch.softmax(torch.randn(k, dtype=torch.float64), 0)
        if self.distribution == "uniform":
            return torch.softmax(torch.rand(k, dtype=torch.float64), 0)
        if self.distribution == "dirichlet":
            return torch.distributions.Dirichlet(torch.ones(k, dtype=torch.float64)).sample()
        on = torch.rand(k) < 0.5
        if not bool(on.any()):
            on[int(torch.randint(k, ()))] = True
        w = on.to(torch.float64)
        return w / w.sum()

    def precomputed_weights(self, ctx: BalanceContext) -> Tensor | None:
        return self.draw(len(ctx.losses))

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        return self.draw(gramian.shape[0]).to(gramian.device)
