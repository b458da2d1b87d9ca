"""Benchmarks: a dataset, its tasks, a default backbone and single-task baselines.

``polytask.benchmarks.get("census-income")`` returns a :class:`Benchmark`;
:class:`BenchmarkRunner` trains methods and architectures on it and reports Δm.
"""

from . import census_income, dense, moleculeace, multimnist, pareto_pairs, yeast  # noqa: F401  (importing registers them)
from .base import Benchmark, BenchmarkData, Split, available, get, register
from .grouping import GroupingResult, GroupingStudy, format_rows, random_partition
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
    "GroupingResult",
    "GroupingStudy",
    "Split",
    "available",
    "format_markdown",
    "format_rows",
    "format_table",
    "get",
    "parse_method",
    "random_partition",
    "register",
]
