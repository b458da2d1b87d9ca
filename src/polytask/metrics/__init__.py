"""Streaming per-task metrics and the Δm multi-task metric."""

from .delta_m import delta_m
from .streaming import (
    AUC,
    F1,
    Accuracy,
    FunctionMetric,
    MeanAbsoluteError,
    Metric,
    RootMeanSquaredError,
    binary_auc,
)

__all__ = [
    "AUC",
    "F1",
    "Accuracy",
    "FunctionMetric",
    "MeanAbsoluteError",
    "Metric",
    "RootMeanSquaredError",
    "binary_auc",
    "delta_m",
]
