"""Benchmarks: a dataset, its tasks, a default backbone and single-task baselines.

``polytask.benchmarks.get("census-income")`` returns a :class:`Benchmark`;
:class:`BenchmarkRunner` trains methods and architectures on it and reports Δm.
"""

from . import census_income, dense, moleculeace, multimnist, pareto_pairs, qm9, yeast  # noqa: F401  (importing registers them)
from . import mnist_fashion as _mnist_fashion  # noqa: F401  (registers mnist+fashion)
from . import moleculeace_datasets as _moleculeace_datasets  # noqa: F401  (moleculeace-30)
from .base import Benchmark, BenchmarkData, Split, available, get, register
from .grouping import GroupingResult, GroupingStudy, format_rows, random_partition
from .multidataset import MultiDatasetData, MultiDatasetRunner
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
    "MultiDatasetData",
    "MultiDatasetRunner",
    "Split",
    "available",
    "format_markdown",
    "format_rows",
    "format_table",
    "get",
    "parse_method",
    "random_partition",
    "register",
    "runner_class",
]


def runner_class(benchmark: Benchmark) -> type[BenchmarkRunner]:
    """The runner a benchmark needs: :class:`MultiDatasetRunner` for multi-dataset ones
    (``options["runner"] == "multidataset"``), else :class:`BenchmarkRunner`."""
    if benchmark.options.get("runner") == "multidataset":
        return MultiDatasetRunner
    return BenchmarkRunner
