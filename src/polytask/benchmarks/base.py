"""The Benchmark spec and the benchmark registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from ..models import Backbone
from ..registry import Registry
from ..tasks import Task


@dataclass
class Split:
    """One split of a benchmark: inputs and ``{task: targets}`` as tensors."""

    inputs: Tensor
    targets: dict[str, Tensor]


@dataclass
class BenchmarkData:
    """The train, validation and test splits."""

    train: Split
    val: Split
    test: Split


@dataclass
class Benchmark:
    """A dataset, its tasks, a default backbone and training defaults.

    Attributes:
        name: registry name (``polytask bench NAME``).
        description: one line, with the paper the setting comes from.
        tasks: builds the task specs.
        load: ``(data_dir, seed) -> BenchmarkData`` reading the real files.
        backbone: ``(data) -> Backbone`` building blocks for every architecture.
        report: per task, the metrics shown in tables and counted in Δm.
        epochs, batch_size, lr, weight_decay: training defaults.
        fetch_name: the name ``polytask data get`` takes to obtain the data (None: bundled).
        reference: published numbers for this setting, ``{source: {task/metric: value}}``.
        fit_tasks: ``(data) -> tasks`` for benchmarks whose task specs depend on the
            training split (targets standardised with its mean and std); see
            :meth:`build_tasks`.
    """

    name: str
    description: str
    tasks: Callable[[], dict[str, Task]]
    load: Callable[[Path | None, int], BenchmarkData]
    backbone: Callable[[BenchmarkData], Backbone]
    report: Mapping[str, tuple[str, ...]]
    epochs: int = 10
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    fetch_name: str | None = None
    reference: dict[str, dict[str, float]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    fit_tasks: Callable[[BenchmarkData], dict[str, Task]] | None = None

    def build_tasks(self, data: BenchmarkData | None = None) -> dict[str, Task]:
        """The task specs, fitted to ``data``'s training split where the benchmark says
        so (``fit_tasks``), else :attr:`tasks`."""
        if self.fit_tasks is not None and data is not None:
            return self.fit_tasks(data)
        return self.tasks()


_BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
register = _BENCHMARKS.register
available = _BENCHMARKS.available


def get(name: str) -> Benchmark:
    """The benchmark registered under ``name``."""
    return _BENCHMARKS.get(name)
