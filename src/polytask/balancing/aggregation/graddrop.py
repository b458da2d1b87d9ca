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

    Extra cost per step: K backward passes through the heads (representation path)
    and O(K × activation size). Degenerate inputs: where every gradient is zero the
    purity is ½ and nothing passes (the sum is zero anyway); exactly opposite
    gradients keep one sign at random.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "leak": [params.Interval(params.Real, 0, 1)],
    }

    def __init__(self, leak: float = 0.0, path: str = "representation",
                 **engine_options: Any) -> None:
        super().__init__(path=path, **engine_options)
        if not 0.0 <= leak <= 1.0:
            raise ValueError(f"GradDrop leak must be in [0, 1], got {leak}")
        self.leak = leak

    def aggregate(self, jacobian: Tensor) -> Tensor:
        k = jacobian.shape[0]
        act = self.current_activation
        if act is not None and act.dim() >= 1 and act.numel() == jacobian.shape[1]:
            batch = act.shape[0]
            per = jacobian.reshape(k, batch, -1)
            signed = (per * torch.sign(act.reshape(1, batch, -1))).sum(1)  # K × F
            mask_shape = (k, 1, per.shape[2])
        else:
            per = jacobian
            signed = jacobian
            mask_shape = tuple(jacobian.shape)
        total = signed.sum(0)
        absolute = signed.abs().sum(0)
        purity = torch.where(absolute > 0, 0.5 * (1 + total / absolute.clamp_min(1e-38)),
                             torch.full_like(total, 0.5))
        u = torch.rand_like(purity)
        keep = (purity > u) & (signed > 0) | (purity < u) & (signed < 0)
        factor = self.leak + (1.0 - self.leak) * keep.to(per.dtype)
        out = (factor.reshape(mask_shape) * per).sum(0)
        self.extras["kept_fraction"] = float(keep.to(torch.float32).mean())
        return out.reshape(-1)
