"""Task specs: ``Regression``, ``Binary``, ``Multiclass``, ``MultiLabel``, ``Custom``; dense
(per-pixel) ``Segmentation``, ``Depth``, ``SurfaceNormal``, ``PixelBinary``."""

from .base import MISSING_CLASS, Binary, Custom, Multiclass, MultiLabel, Regression, Task
from .collection import as_task_dict, check_batch_keys, compute_losses
from .dense import DenseTask, Depth, PixelBinary, Segmentation, SurfaceNormal, dense_head, is_dense
from .reconstruction import Reconstruction, add_input_target
from .standardized import StandardizedRegression

__all__ = [
    "MISSING_CLASS",
    "Binary",
    "Custom",
    "DenseTask",
    "Depth",
    "MultiLabel",
    "Multiclass",
    "PixelBinary",
    "Reconstruction",
    "Regression",
    "StandardizedRegression",
    "Segmentation",
    "SurfaceNormal",
    "Task",
    "add_input_target",
    "as_task_dict",
    "dense_head",
    "is_dense",
    "check_batch_keys",
    "compute_losses",
]
