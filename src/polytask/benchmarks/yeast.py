"""Yeast: 14 gene-function classes as 14 binary tasks (Elisseeff & Weston, NIPS 2001).

The standard 1,500 / 917 train/test split (see :mod:`polytask.data.yeast`), 300
training genes held out for validation and model selection. Reported metric: AUC per
class. Backbone: an MLP (hidden 128, 64) as the shared bottom, a linear head per class.
The paper's own model is a kernel ranking SVM, not a network; the MLP and its training
defaults are polytask's, so the numbers here are not the paper's.
"""

from __future__ import annotations

from pathlib import Path

from ..data.yeast import YEAST_LABELS, load_yeast
from ..tasks import Binary, Task
from .base import Benchmark, BenchmarkData, register
from .common import mlp_backbone, to_tensors

HIDDEN = (128, 64)


def _tasks() -> dict[str, Task]:
    return {name: Binary(name) for name in YEAST_LABELS}


def _load(data_dir: Path | None, seed: int) -> BenchmarkData:
    return to_tensors(load_yeast(data_dir))


register("yeast")(
    lambda: Benchmark(
        name="yeast",
        description="Yeast gene functions: 14 binary classes, 103 features, 1,500/917 split "
        "(Elisseeff & Weston, NIPS 2001)",
        tasks=_tasks,
        load=_load,
        backbone=mlp_backbone(HIDDEN),
        report={name: ("auc",) for name in YEAST_LABELS},
        epochs=20,
        batch_size=64,
        lr=1e-3,
        fetch_name="yeast",
    )
)
