"""Projection methods: PCGrad and Gradient Vaccine, computed on the Gramian.

Both edit each task gradient ``g_i`` by adding multiples of the other task gradients,
one other task at a time in random order. Every edited gradient stays a linear
combination ``c_iᵀ J`` of the rows of the Jacobian, and every inner product the
methods need is ``c_iᵀ G e_j``: the whole procedure runs on the K×K Gramian in
coefficient space (K sequential steps, each vectorised over the K tasks), and the
update is ``(Σ_i c_i)ᵀ J``: a weighted sum of the task gradients.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import resize_buffers_on_load, seeded_rng, task_order, to_weights
from ._solvers import gramian_to_numpy, scale_of


@register("pcgrad")
class PCGrad(GradientAggregator):
    """Projecting conflicting gradients (Yu et al., NeurIPS 2020, "Gradient Surgery for
    Multi-Task Learning").

    For each task ``i``, for every other task ``j`` in a random order: if
    ``g_i'·g_j < 0``, remove the conflicting component,
    ``g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j``. The update is ``Σ_i g_i'`` (the sum, as
    in the paper). Computed exactly on the Gramian (see the module docstring).

    Args:
        seed: seed of the method's own random order; by default drawn from torch's
            global RNG (so ``torch.manual_seed`` makes it reproducible).

    Task-specific parameters get each task's own ``∇L_k`` (the authors' code projects
    per-task gradients and the heads' parts are each task's own:
    ``task_gradients="raw"``).

    Extra cost per step: the Jacobian or Gramian (K backward passes) plus O(K³) on the
    Gramian. Degenerate inputs: a zero gradient is never projected on (and stays zero);
    identical rows do not conflict (the update is their sum); exactly opposite rows
    cancel each other to the zero update.
    """

    random = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "seed": [None, params.Integral],
    }

    gramian_based = True
    restrict_to_live = True
    default_task_gradients = "raw"

    def __init__(self, seed: int | None = None, **engine_options: Any) -> None:
        super().__init__(**engine_options)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        g = g / scale_of(g)
        k = g.shape[0]
        order = task_order(seeded_rng(self._rng), k)
        coef = np.eye(k)
        rows = np.arange(k)
        sq = np.diag(g)
        conflicts = 0
        for t in range(k - 1):
            j = order[:, t]
            dots = np.einsum("ik,ik->i", coef, g[:, j].T)
            hit = (dots < 0) & (sq[j] > 1e-300)
            conflicts += int(hit.sum())
            step = np.where(hit, dots / np.where(hit, sq[j], 1.0), 0.0)
            coef[rows, j] -= step
        self.extras["conflicts"] = float(conflicts)
        return to_weights(coef.sum(0), gramian)


@register("gradvac")
class GradVac(GradientAggregator):
    """Gradient Vaccine (Wang et al., ICLR 2021, "Gradient Vaccine: Investigating and
    Improving Multi-task Optimization in Massively Multilingual Models").

    Keeps an EMA target ``φ̂_ij`` of the cosine similarity of each ordered task pair
    (starting at 0). For each task ``i``, for each other task ``j`` in a random order,
    with ``φ_ij = cos(g_i', g_j)``: if ``φ_ij < φ̂_ij``, add the multiple of ``g_j`` that
    raises the cosine to the target,
    ``g_i' ← g_i' + ‖g_i'‖ (φ̂ √(1−φ²) − φ √(1−φ̂²)) / (‖g_j‖ √(1−φ̂²)) · g_j``;
    then ``φ̂_ij ← (1−β) φ̂_ij + β φ_ij``. The update is ``Σ_i g_i'``. Applied to the whole
    shared parameter vector (the paper also studies per-layer granularity).

    Args:
        beta: EMA rate β of the targets (paper: 1e-2).
        seed: seed of the random order (default: torch's global RNG).

    Task-specific parameters get ``∇L_k`` (LibMTL's implementation:
    ``task_gradients="raw"``).

    Extra cost per step: the Jacobian or Gramian plus O(K³) on the Gramian; state: a
    K×K matrix. Degenerate inputs: pairs where a gradient is zero are skipped (their
    target is not updated); targets are kept in [−1+1e-6, 1−1e-6].
    """

    random = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "beta": [params.Interval(params.Real, 0, 1)],
        "seed": [None, params.Integral],
    }

    gramian_based = True
    default_task_gradients = "raw"

    def __init__(self, beta: float = 1e-2, seed: int | None = None,
                 **engine_options: Any) -> None:
        super().__init__(**engine_options)
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"GradVac beta must be in [0, 1], got {beta}")
        self.beta = beta
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None
        self.register_buffer("targets", torch.zeros(0, 0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401
        resize_buffers_on_load(self, state_dict, prefix, ("targets",))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        g = g / scale_of(g)
        k = g.shape[0]
        if self.targets.shape != (k, k):
            self.targets = torch.zeros(k, k, dtype=torch.float64)
        target = self.targets.cpu().numpy().copy()
        order = task_order(seeded_rng(self._rng), k)
        coef = np.eye(k)
        rows = np.arange(k)
        sq = np.diag(g)
        for t in range(k - 1):
            j = order[:, t]
            gi_gj = np.einsum("ik,ik->i", coef, g[:, j].T)
            norm_i = np.sqrt(np.maximum(np.einsum("ik,kl,il->i", coef, g, coef), 0.0))
            norm_j = np.sqrt(np.maximum(sq[j], 0.0))
            ok = (norm_i > 1e-150) & (norm_j > 1e-150)
            phi = np.where(ok, gi_gj / np.where(ok, norm_i * norm_j, 1.0), 0.0)
            phi = np.clip(phi, -1.0, 1.0)
            tgt = np.clip(target[rows, j], -1 + 1e-6, 1 - 1e-6)
            hit = ok & (phi < tgt)
            root_t = np.sqrt(1.0 - tgt**2)
            num = tgt * np.sqrt(np.maximum(1.0 - phi**2, 0.0)) - phi * root_t
            step = np.where(hit, norm_i * num / np.where(ok, norm_j * root_t, 1.0), 0.0)
            coef[rows, j] += step
            target[rows, j] = np.where(ok, (1 - self.beta) * target[rows, j] + self.beta * phi,
                                       target[rows, j])
        self.targets = torch.as_tensor(target)
        return to_weights(coef.sum(0), gramian)
