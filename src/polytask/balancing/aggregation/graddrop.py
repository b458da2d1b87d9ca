"""GradDrop: gradient sign dropout."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register


@register("graddrop")
class GradDrop(GradientAggregator):
    """Gradient sign dropout (Chen et al., NeurIPS 2020, "Just Pick a Sign: Optimizing
    Deep Multitask Models with Gradient Sign Dropout").

    At each element of the shared activation ``A``, the positive sign purity
    ``P = ½ (1 + Σ_i ∇_i / Σ_i |∇_i|)`` with ``∇_i = Σ_batch sgn(A) ∘ ∂L_i/∂A``
    (Algorithm 1: sign-corrected and summed over the batch) decides, against a
    uniform sample ``U``, which sign survives: task ``i`` keeps its gradient where
    ``P > U`` and ``∇_i > 0`` or ``P < U`` and ``∇_i < 0``. The result
    ``Σ_i (ℓ + (1−ℓ) M_i) ∘ ∂L_i/∂A`` is backpropagated through the shared encoder.
    By default it runs, as in the paper, on the shared representation
    (``path="representation"``, needs ``representation=``); ``path="jacobian"``
    applies it elementwise to the parameter gradients (the common reimplementation).

    Args:
        leak: ℓ ∈ [0, 1], how much of each gradient passes unmasked (paper: 0).
        seed: seed of the method's own generator for ``U``; by default torch's
            global RNG (so ``torch.manual_seed`` and ``Trainer(seed=...)`` make it
            reproducible).

    Task-specific parameters get each task's own ``∇L_k`` (the mask acts at the
    shared activation only: ``task_gradients="raw"``).

    Extra cost per step: K backward passes through the heads (representation path)
    and O(K × activation size). Degenerate inputs: where every gradient is zero the
    purity is ½ and nothing passes (the sum is zero anyway); exactly opposite
    gradients keep one sign at random.
    """

    random = True

    default_task_gradients = "raw"
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "leak": [params.Interval(params.Real, 0, 1)],
        "seed": [None, params.Integral],
    }

    def __init__(self, leak: float = 0.0, path: str = "representation",
                 seed: int | None = None, **engine_options: Any) -> None:
        super().__init__(path=path, **engine_options)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"GradDrop leak must be in [0, 1], got {leak}")
        self.leak = leak
        self.seed = seed
        self.generator: torch.Generator | None = None
        if seed is not None:
            self.generator = torch.Generator().manual_seed(seed)

    def aggregate(self, jacobian: Tensor) -> Tensor:
        k = jacobian.shape[0]
        act = self.current_activation
        if act is not None and act.dim() >= 1 and act.numel() == jacobian.shape[1]:
            batch = act.shape[0]
            per = jacobian.reshape(k, batch, -1)
            signed = (per * torch.sign(act.reshape(1, batch, -1))).sum(1)  # K × F
            mask_shape = (k, 1, per.shape[2])
        else:  # parameter gradients: the mask acts on the gradients themselves
            return self._aggregate_elementwise(jacobian)
        total = signed.sum(0)
        absolute = signed.abs().sum(0)
        purity = torch.where(absolute > 0, 0.5 * (1 + total / absolute.clamp_min(1e-38)),
                             torch.full_like(total, 0.5))
        u = self._uniform(purity)
        keep = torch.where(signed > 0, purity > u, (purity < u) & (signed < 0))
        mask = keep.reshape(mask_shape)
        if self.leak == 0.0:
            out = torch.where(mask, per, 0).sum(0)
        else:
            out = (self.leak + (1.0 - self.leak) * mask.to(per.dtype)).mul(per).sum(0)
        self.extras["kept_fraction"] = float(keep.count_nonzero()) / keep.numel()
        return out.reshape(-1)

    def _uniform(self, like: Tensor) -> Tensor:
        if self.generator is None:
            return torch.rand_like(like)
        return torch.rand(like.shape, generator=self.generator, dtype=like.dtype).to(
            like.device)

    def _aggregate_elementwise(self, jacobian: Tensor) -> Tensor:
        """The same rule when the signed gradients are the gradients: with
        ``pos = Σ_i max(g_i, 0)`` and ``total = Σ_i g_i``, ``Σ_i |g_i| = 2 pos − total``
        and the kept sum is ``pos`` where the positive sign wins, ``total − pos``
        elsewhere (two passes over the K×P matrix instead of a K×P mask)."""
        total = jacobian.sum(0)
        pos = jacobian.clamp(min=0).sum(0)
        # Σ|g| = 0 only where every g_i = 0 (then 0/0): purity 0.5 there; in-place ops
        # keep the rule at a few passes over P (it must not be the step's bottleneck)
        purity = total.div(pos.mul(2).sub_(total)).nan_to_num_(0.0).add_(1).mul_(0.5)
        u = self._uniform(purity)
        positive = purity > u
        leaked = None if self.leak == 0.0 else self.leak * total
        kept = torch.where(positive, pos, total.sub_(pos).mul_(purity < u))
        if leaked is not None:
            kept = leaked.add_(kept, alpha=1.0 - self.leak)
        self.extras["kept_fraction"] = int(positive.sum()) / positive.numel()
        return kept
