"""MoleculeACE as one 30-task regression problem with about 95% of the labels missing.

Data: van Tilborg, Alenicheva & Grisoni, J. Chem. Inf. Model. 2022 (see
:mod:`polytask.data.moleculeace` for the join, the kept per-file train/test split and the
validation hold-out). Inputs: 1,024-bit Morgan fingerprints (radius 2, RDKit). Tasks:
one :class:`~polytask.tasks.StandardizedRegression` per ChEMBL target, trained on the
target standardised with its training labels' mean and std, reported as RMSE in the
file's units (``y``, minus log10 of the activity in nM). Each task's loss and metric
use only the molecules labelled for it: a batch without a label for a task adds
exactly zero for that task.

Backbone: an MLP (1,024 → 512 → 128), shared; a linear head per target. The paper
trains one model per target (its best are SVMs and GBMs on ECFP); it has no
multi-task setting, so the numbers here are polytask's, not the paper's. Its
single-task baselines are polytask's MLP on one target at a time (the same backbone).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.moleculeace import MOLECULEACE_TASKS, load_moleculeace
from ..tasks import StandardizedRegression, Task
from .base import Benchmark, BenchmarkData, register
from .common import mlp_backbone, to_tensors

HIDDEN = (512, 128)


def _tasks() -> dict[str, Task]:
    return {name: StandardizedRegression(name) for name in MOLECULEACE_TASKS}


def standardized_tasks(data: BenchmarkData) -> dict[str, Task]:
    """One StandardizedRegression per target, with the training labels' mean and std."""
    tasks: dict[str, Task] = {}
    for name, y in data.train.targets.items():
        values = y[~y.isnan()].double()
        std = float(values.std()) if len(values) > 1 else 1.0
        tasks[name] = StandardizedRegression(
            name, mean=float(values.mean()), std=std if np.isfinite(std) and std > 0 else 1.0
        )
    return tasks


def _load(data_dir: Path | None, seed: int) -> BenchmarkData:
    return to_tensors(load_moleculeace(data_dir))


register("moleculeace")(
    lambda: Benchmark(
        name="moleculeace",
        description="MoleculeACE: 30 ChEMBL bioactivity regressions joined on the molecule, "
        "~95% labels missing, ECFP inputs (van Tilborg et al., JCIM 2022)",
        tasks=_tasks,
        fit_tasks=standardized_tasks,
        load=_load,
        backbone=mlp_backbone(HIDDEN),
        report={name: ("rmse",) for name in MOLECULEACE_TASKS},
        epochs=20,
        batch_size=128,
        lr=1e-3,
        weight_decay=1e-5,
        fetch_name="moleculeace",
    )
)
