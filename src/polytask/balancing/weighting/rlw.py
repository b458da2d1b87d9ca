"""Random loss weighting (RLW)."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ...errors import PolytaskError
from ..base import BalanceContext, LossWeighting
from ..registry import register

DISTRIBUTIONS = ("normal", "uniform", "dirichlet", "bernoulli")


@register("rlw")
class RandomLossWeighting(LossWeighting):
    """Random loss weighting (Lin et al., TMLR 2022, "Reasonable
    effectiveness of random weighting").

    At every step fresh weights are drawn: ``w = softmax(λ)`` with ``λ ~ N(0, I)``
    (``distribution="normal"``, the paper's main choice), or from the paper's other
    samplers: ``"uniform"`` (softmax of U(0,1)), ``"dirichlet"`` (Dir(1)) or
    ``"bernoulli"`` (a random non-empty subset, normalised). Weights sum to 1 and are
    equal in expectation. Draws come from torch's global RNG (so ``torch.manual_seed``,
    ``Trainer(seed=...)`` and ``polytask bench --seeds`` make runs reproducible), or
    from the method's own generator when ``seed`` is given. Dead tasks (loss exactly
    0) get no weight: the weights are drawn over the live tasks.

    Extra cost per step: none (K random numbers).
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "distribution": [params.Options(DISTRIBUTIONS)],
        "seed": [None, params.Integral],
    }

    def __init__(self, distribution: str = "normal", seed: int | None = None) -> None:
        super().__init__()
        if distribution not in DISTRIBUTIONS:
            raise PolytaskError(
                f"unknown RLW distribution {distribution!r}; choose from {DISTRIBUTIONS}"
            )
        self.distribution = distribution
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def sample(self, k: int) -> Tensor:
        """K weights drawn from the chosen distribution (on the CPU)."""
        g = self.generator
        if self.distribution == "normal":
            return torch.softmax(torch.randn(k, generator=g), dim=0)
        if self.distribution == "uniform":
            return torch.softmax(torch.rand(k, generator=g), dim=0)
        if self.distribution == "dirichlet":
            e = -torch.log(torch.rand(k, generator=g).clamp_min(1e-12))  # Gamma(1) draws
            return e / e.sum()
        while True:
            b = (torch.rand(k, generator=g) < 0.5).float()
            if b.sum() > 0:
                return b / b.sum()

    def weights(self, losses: Tensor, ctx: BalanceContext) -> Tensor:
        live = ctx.live.cpu()
        w = torch.zeros(losses.numel(), dtype=losses.dtype)
        if bool(live.any()):
            w[live] = self.sample(int(live.sum())).to(w.dtype)
        return w.to(losses)
