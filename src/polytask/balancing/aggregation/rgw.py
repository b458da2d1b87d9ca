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

    Draws come from torch's global RNG (``torch.manual_seed`` and ``Trainer(seed=...)``
    make runs reproducible), or from the method's own generator when ``seed`` is
    given. Dead tasks (loss exactly 0) get no weight (drawn over the live tasks).

    Since ``Σ_k λ_k ∇_θ L_k = ∇_θ Σ_k λ_k L_k``, the update needs no Jacobian: one
    backward of the weighted loss gives it on every path, and task-specific
    parameters get ``Σ λ_k ∇L_k`` (the paper weights the losses). Extra cost per
    step: none.
    Degenerate inputs: the update is a convex combination of the rows, finite
    whenever they are.
    """

    random = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "distribution": [params.Options(DISTRIBUTIONS)],
    }

    gramian_based = True

    restrict_to_live = True

    def __init__(self, distribution: str = "normal", seed: int | None = None,
                 **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if distribution not in DISTRIBUTIONS:
            raise ValueError(f"unknown RGW distribution {distribution!r}; use {DISTRIBUTIONS}")
        self.distribution = distribution
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def draw(self, k: int) -> Tensor:
        """K random weights summing to one."""
        gen = self.generator
        if self.distribution == "normal":
            return torch.softmax(torch.randn(k, dtype=torch.float64, generator=gen), 0)
        if self.distribution == "uniform":
            return torch.softmax(torch.rand(k, dtype=torch.float64, generator=gen), 0)
        if self.distribution == "dirichlet":  # Dir(1) = normalised Exp(1) draws
            e = -torch.log(torch.rand(k, dtype=torch.float64, generator=gen).clamp_min(1e-300))
            return e / e.sum()
        on = torch.rand(k, generator=gen) < 0.5
        if not bool(on.any()):
            on[int(torch.randint(k, (), generator=gen))] = True
        w = on.to(torch.float64)
        return w / w.sum()

    def precomputed_weights(self, ctx: BalanceContext) -> Tensor | None:
        live = ctx.live.cpu()
        w = torch.zeros(len(ctx.losses), dtype=torch.float64)
        if bool(live.any()):
            w[live] = self.draw(int(live.sum()))
        return w

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        return self.draw(gramian.shape[0]).to(gramian.device)

    def aggregate(self, jacobian: Tensor) -> Tensor:
        """``λ @ J`` for fresh random ``λ`` (no Gramian: the rule does not need one)."""
        k = jacobian.shape[0]
        dead = self._dead(k)
        if dead is not None and not bool(dead.all()):
            w = torch.zeros(k, dtype=torch.float64)
            w[~dead] = self.draw(int((~dead).sum()))
        else:
            w = self.draw(k)
        if w.device != jacobian.device:
            w = w.to(jacobian.device)
        # a plain attribute (no nn.Module bookkeeping): this rule is one small product,
        # and the module's __setattr__ would be a fifth of its time at K = 2
        object.__setattr__(self, "_last_weights", w)
        return w.to(jacobian.dtype) @ jacobian
