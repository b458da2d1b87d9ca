"""Benchmarks: a dataset, its tasks, a default backbone and single-task baselines.

``polytask.benchmarks.get("census-income")`` returns a :class:`Benchmark`;
:class:`BenchmarkRunner` trains methods and architectures on it and reports Δm.
"""

from . import census_income, moleculeace, multimnist, qm9, yeast  # noqa: F401  (importing registers them)
from .base import Benchmark, BenchmarkData, Split, available, get, register
from .runner import (
    BenchmarkResults,
    BenchmarkRunner,
    format_markdown,
    format_table,
    parse_method,
)

__all__ = [
    "Benchmark",
    "BenchmarkData",
    "BenchmarkResults",
    "BenchmarkRunner",
    "Split",
    "available",
    "format_markdown",
    "format_table",
    "get",
    "parse_method",
    "register",
]
