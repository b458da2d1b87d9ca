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
    Algorithm 1) and Wolfe's exact active-set algorithm for any larger K (as cheap as
    Frank-Wolfe on a K×K matrix, and exact where the paper's Frank-Wolfe stops up to
    several % away from the min-norm point); ``solver="frank-wolfe"`` gives the
    paper's Algorithm 2 (best-pair start, exact line search, ``max_iter`` iterations,
    stop when the weights move by less than ``tol``), and ``exact_max_tasks`` switches
    ``"auto"`` to it above that many tasks. Every stopping rule is relative to the
    current norm, so a task gradient 10⁵ or 10⁶ times larger than the others does not
    stop the solver early at that gradient.

    ``normalization`` rescales each gradient before solving, as in the authors' code
    (``gradient_normalizers``; "optional and not included in the paper"): ``"none"``
    (the paper), ``"l2"`` (unit gradients), ``"loss"`` (divide by the loss),
    ``"loss+"`` (by loss × norm). The authors then apply the solver's weights to the
    *raw* losses (``scale[t] = sol[i]``; ``loss = Σ scale[t] L_t``):
    ``weights_on="raw"``, the default. ``weights_on="normalized"`` instead gives the
    min-norm point of the normalised gradients (weights ``w_k / n_k`` on the raw
    ones). Task-specific parameters get ``Σ w_k ∇L_k`` (the authors' scaled
    backward: ``task_gradients="weighted"``). Dead tasks (loss exactly 0) are left
    out of the hull (a zero gradient would be the min-norm point and stop every task).

    Extra cost per step: the Jacobian (K backward passes, or the Gramian path's K×K
    Gramian and one more backward) plus an O(K²)-per-iteration solve on the Gramian.
    Degenerate inputs: zero gradients give the zero update (a zero row is its own
    min-norm point); identical rows share weight; exactly opposite rows give zero.
    """

    properties = ("min_norm", "non_conflicting")
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "solver": [params.Options(("auto", "exact", "frank-wolfe"))],
        "normalization": [params.Options(NORMALIZATIONS)],
        "exact_max_tasks": [params.Interval(params.Integral, 1, None)],
        "max_iter": [params.Interval(params.Integral, 1, None)],
        "tol": [params.Interval(params.Real, 0, None, closed="neither")],
    }

    gramian_based = True
    restrict_to_live = True

    def __init__(
        self,
        solver: str = "auto",
        normalization: str = "none",
        exact_max_tasks: int | None = None,
        max_iter: int = 250,
        tol: float = 1e-5,
        weights_on: str = "raw",
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
        if weights_on not in ("raw", "normalized"):
            raise ValueError(f"MGDA weights_on must be 'raw' or 'normalized', got {weights_on!r}")
        self.weights_on = weights_on
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
        gn = g if self.normalization == "none" else g / np.outer(n, n)
        w = min_norm_weights(gn, self.solver, self.exact_max_tasks, self.max_iter, self.tol)
        self.extras["min_norm"] = float(np.sqrt(max(w @ gn @ w, 0.0) / scale_of(gn)))
        return to_weights(w / n if self.weights_on == "normalized" else w, gramian)


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
