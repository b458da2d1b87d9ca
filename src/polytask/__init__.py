"""polytask: deep multi-task learning for PyTorch."""

from . import (
    balancing,
    benchmarks,
    data,
    metrics,
    models,
    multidataset,  # tasks from different datasets
    pareto,  # registers the scalarizations, pmtl and epo as balancers
    relations,
    tasks,
    training,
)
from .balancing import Balancer, BalanceResult
from .errors import PolytaskError
from .metrics import delta_m
from .models import HardSharing, MultiTaskModel
from .tasks import Binary, Custom, Multiclass, MultiLabel, Regression, Task
from .training import Trainer

__version__ = "0.1.0"

__all__ = [
    "BalanceResult",
    "Balancer",
    "Binary",
    "Custom",
    "HardSharing",
    "MultiLabel",
    "MultiTaskModel",
    "Multiclass",
    "PolytaskError",
    "Regression",
    "Task",
    "Trainer",
    "__version__",
    "balancing",
    "benchmarks",
    "data",
    "delta_m",
    "metrics",
    "models",
    "multidataset",
    "pareto",
    "relations",
    "tasks",
    "training",
]


def __getattr__(name: str):
    """Import ``polytask.linear`` (scikit-learn estimators) and ``polytask.lightning``
    (the ``lightning`` extra) only when first used."""
    if name in ("linear", "lightning"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'polytask' has no attribute {name!r}")
