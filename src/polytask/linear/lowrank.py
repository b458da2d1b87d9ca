"""Low-rank multi-task learning: trace-norm (nuclear-norm) regularisation."""

from __future__ import annotations

import numpy as np

from polytask.linear._prox import prox_trace
from polytask.linear.base import LinearMTLBase


class MultiTaskTraceNorm(LinearMTLBase):
    """Trace-norm regularised multi-task learning: tasks share a low-dimensional subspace.

    Minimises ``F(W, b) + α·||W||_*`` (sum of singular values of the T×d ``coef_``): the
    convex envelope of rank, so the task weight vectors lie in a few shared directions.

    Papers: Ji & Ye, "An accelerated gradient method for trace norm minimization", ICML 2009;
    Pong, Tseng, Ji & Ye, "Trace norm regularization: reformulations, algorithms, and
    multi-task learning", SIAM J. Optim. 2010 (also Argyriou et al. 2008's equivalence with
    feature learning in a shared subspace). Solver: FISTA with backtracking (Ji & Ye's
    extended-gradient method) and restart; the prox is singular-value soft-thresholding.
    Cost per iteration: one data-term gradient plus one thin SVD of a T×d matrix
    (O(T²d) for T ≤ d). Reference code (MALSAR ``Least_Trace``) uses the unnormalised loss
    Σ_t ½||y_t − X_t w_t||²; polytask uses the per-task mean loss (sklearn's scaling).
    """

    def _prox(self, V, step):
        Z, g = prox_trace(V, step * self.alpha)
        return Z, self.alpha * g

    def alpha_max(self, X, y, task=None) -> float:
        """The smallest α at which W = 0: the spectral norm of the gradient at zero."""
        return float(np.linalg.norm(self._gradient_at_zero(X, y, task), 2))
