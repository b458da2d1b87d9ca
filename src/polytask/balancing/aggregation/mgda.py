"""MGDA: the min-norm point of the convex hull of the task gradients."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torch import Tensor

from ... import params
from ..base import GradientAggregator
from ..registry import register
from ._common import to_weights
from ._solvers import gramian_to_numpy, min_norm_weights, scale_of

NORMALIZATIONS = ("none", "l2", "loss", "loss+")


@register("mgda")
class MGDA(GradientAggregator):
    """Multiple-gradient descent (Désidéri, C. R. Math. 2012; Sener & Koltun, NeurIPS 2018,
    "Multi-Task Learning as Multi-Objective Optimization").

    The update is the min-norm element ``d = Σ_k w_k g_k`` of the convex hull of the task
    gradients (``w`` on the simplex). ``d`` is zero at a Pareto-stationary point, and
    otherwise ``g_kᵀ d ≥ ‖d‖² > 0`` for every task: no task gets worse to first order.
    The weights come from the K×K Gramian: closed form for two tasks (the paper's
    Algorithm 1), Wolfe's exact active-set algorithm up to ``exact_max_tasks`` tasks,
    and the paper's Frank-Wolfe (Algorithm 2, best-pair start, exact line search,
    ``max_iter`` iterations, stop when the weights move by less than ``tol``) beyond;
    ``solver`` forces one (``"exact"`` or ``"frank-wolfe"``).

    ``normalization`` rescales each gradient before solving, as in the authors' code:
    ``"none"`` (the paper), ``"l2"`` (unit gradients), ``"loss"`` (divide by the loss),
    ``"loss+"`` (by loss × norm). The weights returned apply to the raw gradients.
    The update has the scale of one task's gradient (the weights sum to one when
    ``normalization="none"``).

    Extra cost per step: the Jacobian (K backward passes, or the Gramian path's K×K
    Gramian and one more backward) plus an O(K²)-per-iteration solve on the Gramian.
    Degenerate inputs: zero gradients give the zero update (a zero row is its own
    min-norm point); identical rows share weight; exactly opposite rows give zero.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "solver": [params.Options(("auto", "exact", "frank-wolfe"))],
        "normalization": [params.Options(NORMALIZATIONS)],
        "exact_max_tasks": [params.Interval(params.Integral, 1, None)],
        "max_iter": [params.Interval(params.Integral, 1, None)],
        "tol": [params.Interval(params.Real, 0, None, closed="neither")],
    }

    gramian_based = True

    def __init__(
        self,
        solver: str = "auto",
        normalization: str = "none",
        exact_max_tasks: int = 16,
        max_iter: int = 250,
        tol: float = 1e-5,
        **engine_options: Any,
    ) -> None:
        super().__init__(**engine_options)
        if solver not in ("auto", "exact", "frank-wolfe"):
            raise ValueError(
                f"unknown MGDA solver {solver!r}; use 'auto', 'exact' or 'frank-wolfe'"
            )
        if normalization not in NORMALIZATIONS:
            raise ValueError(
                f"unknown normalization {normalization!r}; use one of {NORMALIZATIONS}"
            )
        self.solver = solver
        self.normalization = normalization
        self.exact_max_tasks = exact_max_tasks
        self.max_iter = max_iter
        self.tol = tol

    def _normalizers(self, g: np.ndarray) -> np.ndarray:
        k = g.shape[0]
        norms = np.sqrt(np.maximum(np.diag(g), 0.0))
        if self.normalization == "none":
            return np.ones(k)
        if self.normalization == "l2":
            n = norms
        else:
            losses = self.current_losses
            if losses is None:
                raise ValueError(f"MGDA normalization {self.normalization!r} needs the losses")
            n = np.abs(losses.detach().double().cpu().numpy())
            if self.normalization == "loss+":
                n = n * norms
        return np.where(n > 0, n, 1.0)

    def weights_from_gramian(self, gramian: Tensor) -> Tensor:
        g = gramian_to_numpy(gramian)
        n = self._normalizers(g)
        gn = g / np.outer(n, n)
        w = min_norm_weights(gn, self.solver, self.exact_max_tasks, self.max_iter, self.tol)
        self.extras["min_norm"] = float(np.sqrt(max(w @ gn @ w, 0.0) / scale_of(gn)))
        return to_weights(w / n, gramian)


@register("mgda-ub")
class MGDAUB(MGDA):
    """MGDA-UB (Sener & Koltun, NeurIPS 2018): MGDA on the gradients of the shared
    representation ``z`` instead of the shared parameters, the paper's upper bound
    ``‖Σ w_k ∇_θ L_k‖ ≤ ‖∂z/∂θ‖ ‖Σ w_k ∇_z L_k‖``; then one backward of
    ``Σ w_k L_k``.

    Needs ``representation=model.shared_representation``. Extra cost per step: K
    backward passes through the task heads only (plus one full weighted backward) and
    the Gramian solve of :class:`MGDA`.
    """

    def __init__(self, path: str = "representation", **options: Any) -> None:
        super().__init__(path=path, **options)
