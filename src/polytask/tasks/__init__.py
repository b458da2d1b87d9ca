"""Task specs: ``Regression``, ``Binary``, ``Multiclass``, ``MultiLabel``, ``Custom``."""

from .base import MISSING_CLASS, Binary, Custom, Multiclass, MultiLabel, Regression, Task
from .collection import as_task_dict

__all__ = [
    "MISSING_CLASS",
    "Binary",
    "Custom",
    "MultiLabel",
    "Multiclass",
    "Regression",
    "Task",
    "as_task_dict",
]
