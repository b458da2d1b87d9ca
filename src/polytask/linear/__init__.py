"""Non-neural multi-task learning: scikit-learn estimators whose tasks are tied by a
regulariser (block sparsity, low rank, task clusters, task graphs, learned task covariance).

Every estimator takes the wide form ``fit(X, Y)`` (Y n×T, NaN = missing target) or the long
form ``fit(X, y, task=ids)``, ``loss="squared"`` or ``"logistic"``, and the scikit-learn
parameter names (``alpha``, ``l1_ratio``, ``tol``, ``max_iter``, ``warm_start``,
``fit_intercept``). numpy/scipy/scikit-learn only; no torch.
"""

from polytask.linear._data import MissingTargetError, UnknownTaskError
from polytask.linear.base import LinearMTLBase
from polytask.linear.clustered import ClusteredMTL
from polytask.linear.cv import MultiTaskCV, regularization_path
from polytask.linear.graph import GraphRegularizedMTL, MeanRegularizedMTL
from polytask.linear.lowrank import MultiTaskTraceNorm
from polytask.linear.mtrl import MTRL
from polytask.linear.sparse import MultiTaskDirty, MultiTaskL21

__all__ = [
    "MTRL",
    "ClusteredMTL",
    "GraphRegularizedMTL",
    "LinearMTLBase",
    "MeanRegularizedMTL",
    "MissingTargetError",
    "MultiTaskCV",
    "MultiTaskDirty",
    "MultiTaskL21",
    "MultiTaskTraceNorm",
    "UnknownTaskError",
    "regularization_path",
]
