"""``mnist+fashion``: two datasets, one shared CNN — digits and clothing.

Task ``mnist`` classifies MNIST digits and task ``fashion`` Fashion-MNIST items (10
classes each, accuracy); each task has only its own dataset, so no image carries both
labels. The model is the LeNet-style CNN of the MultiMNIST benchmarks (Sener & Koltun,
NeurIPS 2018: two conv-pool stages and a 50-unit dense layer), shared, with a two-layer
head per task. This is the two-dataset image setting used to study task sampling and
interference (e.g. as the "MNIST + Fashion-MNIST" pair of continual and multi-task
learning studies); polytask fixes the splits below.

Splits: MNIST 50k/10k/10k (the classic pickle); Fashion-MNIST's first 50,000 training
images for training (of which the benchmark keeps ``fashion_train`` = 5,000 — the
first 5,000 of a fixed permutation, seed 0 — so that the datasets differ in size by
10× and the sampling schedules differ), the last 10,000 for validation, and its 10,000
test images. Pixel values in [0, 1]; images 1×28×28.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .. import data as datasets
from .base import Benchmark, Split, register
from .multidataset import MultiDatasetData
from .multimnist import _backbone, _two_layer_head

FASHION_TRAIN = 5000


def _tasks() -> dict:
    from ..tasks import Multiclass

    head = _two_layer_head(50)
    return {
        "mnist": Multiclass("mnist", num_classes=10, head=head),
        "fashion": Multiclass("fashion", num_classes=10, head=head),
    }


def _split(images: np.ndarray, labels: np.ndarray, task: str) -> Split:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
    return Split(x, {task: torch.as_tensor(np.asarray(labels), dtype=torch.long)})


def load_mnist_fashion(
    data_dir: Path | None, seed: int = 0, fashion_train: int | None = FASHION_TRAIN
) -> MultiDatasetData:
    """MNIST and Fashion-MNIST as two datasets (see the module docstring).

    ``fashion_train``: how many Fashion-MNIST training images to keep (None: all
    50,000). ``seed`` is unused: the splits are fixed.
    """
    mnist = datasets.load_mnist(data_dir)
    fashion = datasets.load_fashion_mnist(data_dir)
    fx, fy = fashion["train"]
    if fashion_train is not None:
        keep = np.sort(np.random.default_rng(0).permutation(len(fx))[:fashion_train])
        fx, fy = fx[keep], fy[keep]
    parts = {}
    for split in ("train", "val", "test"):
        f_images, f_labels = (fx, fy) if split == "train" else fashion[split]
        parts[split] = {
            "mnist": _split(*mnist[split], "mnist"),
            "fashion": _split(f_images, f_labels, "fashion"),
        }
    return MultiDatasetData(**parts)


def _backbone_for(data: MultiDatasetData):  # noqa: ANN202
    from .base import BenchmarkData

    first = next(iter(data.train.values()))
    return _backbone((10, 20), 5, 0, 50)(BenchmarkData(first, first, first))


register("mnist+fashion")(
    lambda: Benchmark(
        name="mnist+fashion",
        description="MNIST digits and Fashion-MNIST items as two datasets (50k and 5k "
        "training images), one shared LeNet CNN",
        tasks=_tasks,
        load=lambda data_dir, seed: load_mnist_fashion(data_dir, seed),
        backbone=_backbone_for,
        report={"mnist": ("accuracy",), "fashion": ("accuracy",)},
        epochs=10,
        batch_size=128,
        lr=1e-3,
        fetch_name="mnist+fashion",
        options={"steps_per_epoch": 200, "runner": "multidataset"},
    )
)
