"""Overlapping-digit benchmarks: MultiMNIST and its relatives.

Two images on one canvas, one at the top-left and one at the bottom-right, tasks
``left`` and ``right`` (10 classes each) — Sener & Koltun, NeurIPS 2018; Lin et al.,
NeurIPS 2019. As in Sener & Koltun, the 36×36 canvas is resized to 28×28
(bilinear). Backbone: the LeNet-style CNN of those papers (two conv-pool stages and a
50-unit dense layer, shared), heads of two dense layers.

- ``multimnist``: two MNIST digits on a 36×36 canvas;
- ``multifashion``: two Fashion-MNIST items; ``multifashion-mnist``: a digit and an item;
- ``multidigits``: two of scikit-learn's bundled 8×8 digits on a 12×12 canvas (small,
  needs no download; used by the tests and quick checks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch.nn.functional as F
from torch import nn

from .. import data as datasets
from ..models import Backbone
from ..tasks import Multiclass, Task
from .base import Benchmark, BenchmarkData, register
from .common import StagedEncoder, lenet_stages, to_tensors


def _two_layer_head(hidden: int) -> Callable[[int], nn.Module]:
    def build(in_features: int) -> nn.Module:
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    return build


def _tasks(hidden: int) -> Callable[[], dict[str, Task]]:
    def build() -> dict[str, Task]:
        head = _two_layer_head(hidden)
        return {
            "left": Multiclass("left", num_classes=10, head=head),
            "right": Multiclass("right", num_classes=10, head=head),
        }

    return build


def _backbone(
    channels: tuple[int, int], kernel: int, padding: int, hidden: int
) -> Callable[[BenchmarkData], Backbone]:
    def build(data: BenchmarkData) -> Backbone:
        size = data.train.inputs.shape[-1]

        def stages() -> list[nn.Module]:
            return lenet_stages(size, channels, kernel, padding, hidden)

        return Backbone(
            make_encoder=lambda: StagedEncoder(stages(), hidden),
            out_features=hidden,
            make_stages=stages,
            stage_channels=(*channels, hidden),
            input_shape=tuple(data.train.inputs.shape[1:]),
        )

    return build


def _resize(data: BenchmarkData, size: int) -> BenchmarkData:
    for split in (data.train, data.val, data.test):
        split.inputs = F.interpolate(
            split.inputs, size=(size, size), mode="bilinear", align_corners=False
        )
    return data


def _loader(load: Callable[..., object], needs_dir: bool = True, size: int | None = None):
    def run(data_dir: Path | None, seed: int) -> BenchmarkData:
        raw = load(data_dir, seed=seed) if needs_dir else load(seed=seed)
        data = to_tensors(raw)
        return _resize(data, size) if size else data

    return run


def _mnist_like(name: str, description: str, load, fetch: str) -> Benchmark:  # noqa: ANN001
    return Benchmark(
        name=name,
        description=description,
        tasks=_tasks(50),
        load=_loader(load, size=28),
        backbone=_backbone((10, 20), 5, 0, 50),
        report={"left": ("accuracy",), "right": ("accuracy",)},
        epochs=10,
        batch_size=256,
        lr=1e-3,
        fetch_name=fetch,
    )


register("multimnist")(
    lambda: _mnist_like(
        "multimnist",
        "MultiMNIST: two overlapping MNIST digits, 36×36 resized to 28×28 (Sener & Koltun, 2018)",
        datasets.load_multimnist,
        "mnist",
    )
)
register("multifashion")(
    lambda: _mnist_like(
        "multifashion",
        "MultiFashion: two overlapping Fashion-MNIST items, 36×36 (Lin et al., NeurIPS 2019)",
        datasets.load_multifashion,
        "fashion-mnist",
    )
)
register("multifashion-mnist")(
    lambda: _mnist_like(
        "multifashion-mnist",
        "Multi-(Fashion+MNIST): a digit and a Fashion-MNIST item, 36×36 (Lin et al., 2019)",
        datasets.load_multifashion_mnist,
        "multifashion-mnist",
    )
)
register("multidigits")(
    lambda: Benchmark(
        name="multidigits",
        description="two overlapping 8×8 scikit-learn digits on a 12×12 canvas (bundled data)",
        tasks=_tasks(32),
        load=_loader(datasets.load_multidigits, needs_dir=False),
        backbone=_backbone((8, 16), 3, 1, 64),
        report={"left": ("accuracy",), "right": ("accuracy",)},
        epochs=15,
        batch_size=32,
        lr=3e-3,
        fetch_name=None,
    )
)
