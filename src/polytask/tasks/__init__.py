"""Task specs: ``Regression``, ``Binary``, ``Multiclass``, ``MultiLabel``, ``Custom``."""

from .base import MISSING_CLASS, Binary, Custom, Multiclass, MultiLabel, Regression, Task
from .collection import as_task_dict
from .reconstruction import Reconstruction, add_input_target
from .standardized import StandardizedRegression

__all__ = [
    "MISSING_CLASS",
    "Binary",
    "Custom",
    "MultiLabel",
    "Multiclass",
    "Reconstruction",
    "Regression",
    "StandardizedRegression",
    "Task",
    "add_input_target",
    "as_task_dict",
]
