"""``moleculeace-30``: MoleculeACE as 30 datasets, each assay with its own molecules.

The 30 ChEMBL bioactivity regressions of MoleculeACE (van Tilborg, Alenicheva & Grisoni,
J. Chem. Inf. Model. 2022), read by :func:`polytask.data.load_moleculeace` (the
``moleculeace`` benchmark joins them on the molecule, ~95% of the entries missing).
Here each target is its own dataset: its molecules (1,024-bit Morgan fingerprints,
radius 2) and their labels in that file's own train/test split, with the same
validation hold-out as ``moleculeace``. A molecule measured on several targets appears
in each of their datasets. The model is the same shared MLP (1,024 → 512 → 128) with a
linear head per target; each task is a
:class:`~polytask.tasks.StandardizedRegression` (trained on the target standardised
with its training labels' mean and std, reported as RMSE in the file's units).

The paper trains one model per target and has no multi-task setting: the numbers are
polytask's. Single-task baselines are the same MLP on one target's dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..data.moleculeace import MOLECULEACE_TASKS
from ..models import Backbone
from ..tasks import StandardizedRegression, Task
from .base import Benchmark, BenchmarkData, Split, register
from .common import mlp_backbone
from .moleculeace import HIDDEN, _load
from .multidataset import MultiDatasetData


def per_target(data: BenchmarkData) -> MultiDatasetData:
    """Split a joined molecule × target table into one dataset per target: the rows
    labelled for it (not NaN), with that target only."""

    def split(part: Split) -> dict[str, Split]:
        out = {}
        for task, y in part.targets.items():
            rows = ~torch.isnan(y)
            out[task] = Split(part.inputs[rows], {task: y[rows]})
        return out

    return MultiDatasetData(split(data.train), split(data.val), split(data.test))


def _load_datasets(data_dir: Path | None, seed: int) -> MultiDatasetData:
    return per_target(_load(data_dir, seed))


def standardized_tasks(data: MultiDatasetData) -> dict[str, Task]:
    """One StandardizedRegression per target, with its training dataset's mean and std."""
    tasks: dict[str, Task] = {}
    for name in MOLECULEACE_TASKS:
        y = data.train[name].targets[name].double()
        std = float(y.std()) if len(y) > 1 else 1.0
        tasks[name] = StandardizedRegression(
            name, mean=float(y.mean()), std=std if std > 0 and std == std else 1.0
        )
    return tasks


def _backbone(data: MultiDatasetData) -> Backbone:
    first = next(iter(data.train.values()))
    return mlp_backbone(HIDDEN)(BenchmarkData(first, first, first))


register("moleculeace-30")(
    lambda: Benchmark(
        name="moleculeace-30",
        description="MoleculeACE as 30 datasets: each ChEMBL target with its own molecules "
        "(van Tilborg et al., JCIM 2022), one shared MLP on ECFP",
        tasks=lambda: {name: StandardizedRegression(name) for name in MOLECULEACE_TASKS},
        fit_tasks=standardized_tasks,  # type: ignore[arg-type]
        load=_load_datasets,  # type: ignore[arg-type]
        backbone=_backbone,  # type: ignore[arg-type]
        report={name: ("rmse",) for name in MOLECULEACE_TASKS},
        epochs=20,
        batch_size=128,
        lr=1e-3,
        weight_decay=1e-5,
        fetch_name="moleculeace",
        options={"runner": "multidataset"},
    )
)
