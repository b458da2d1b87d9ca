"""polytask: deep multi-task learning for PyTorch."""

from . import balancing, benchmarks, data, metrics, models, tasks, training
from . import multidataset as multidataset  # tasks from different datasets
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
    "tasks",
    "training",
]
