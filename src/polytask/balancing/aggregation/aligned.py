"""Aligned-MTL: align the principal components of the gradient system."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import gramian_to_numpy

SCALES = ("min", "median", "rmse")


@register("aligned-mtl")
class AlignedMTL(GradientAggregator):
    """Aligned-MTL (Senushkin et al., CVPR 2023, "Independent Component Alignment for
    Multi-Task Learning").

    Makes the gradient system perfectly conditioned: with the eigendecomposition
    ``G = V Λ Vᵀ`` (rank r), the aligned system ``B J`` with
    ``B = σ V_r Λ_r^{-1/2} V_rᵀ`` has all its r non-zero singular values equal to
    ``σ`` (condition number 1); the update is ``wᵀ B J`` for task preferences ``w``
    (ones). ``σ`` is the smallest non-zero singular value (``scale="min"``, the paper),
    their median, or their root mean square.

    Extra cost per step: the Jacobian or Gramian plus a K×K eigendecomposition.
    Degenerate inputs: the rank is cut at ``λ_max · K · 1.2e-7`` (float32 precision,
    as in the authors' code); all-zero gradients give the zero update.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "scale": [params.Options(SCALES)],
        "preferences": [None, params.PerTask(params.Interval(params.Real, 0, None))],
    }

    gramian_based = True

    def __init__(
        self, scale: str = "min", preferences: list[float] | None = None, **engine_options: Any
    ) -> None:
        super().__init__(**engine_options)
        if scale not in SCALES:
            raise ValueError(f"unknown Aligned-MTL scale {scale!r}; use one of {SCALES}")
        self.scale = scale
        self.preferences = preferences

    def _components(self, g: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        """``(σ, V_r, √Λ_r)`` of the Gramian ``g``, or None when it is zero."""
        evals, evecs = np.linalg.eigh(g)
        k = g.shape[0]
        top = float(evals.max()) if evals.size else 0.0
        keep = evals > max(top, 0.0) * k * 1.1920929e-07
        if top <= 0 or not keep.any():
            return None
        lam, v = evals[keep], evecs[:, keep]
        sigma = np.sqrt(lam)
        if self.scale == "min":
            s = float(sigma.min())
        elif self.scale == "median":
            s = float(np.median(sigma))
        else:
            s = float(np.sqrt(np.mean(lam)))
        return s, v, sigma

    def balance_matrix(self, g: np.ndarray) -> np.ndarray:
        """The K×K matrix ``B`` (float64) for the Gramian ``g``."""
        parts = self._components(g)
        if parts is None:
            return np.zeros(g.shape)
        s, v, sigma = parts
        return s * (v / sigma) @ v.T

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        k = g.shape[0]
        pref = np.ones(k) if self.preferences is None else np.asarray(self.preferences, float)
        if pref.shape != (k,):
            raise ValueError(f"Aligned-MTL: {pref.size} preferences for {k} tasks")
        parts = self._components(g)
        if parts is None:
            return to_weights(np.zeros(k), gramian)
        s, v, sigma = parts
        # B p = σ V_r Λ_r^{-1/2} (V_rᵀ p): two matrix-vector products, no K×K product
        return to_weights(s * (v @ ((v.T @ pref) / sigma)), gramian)
