"""The Pareto-MTL overlapping-pair benchmarks (Lin et al., NeurIPS 2019) and their LeNet.

``pareto-multimnist``, ``pareto-multifashion``, ``pareto-multifashion-mnist``: the data
of :mod:`polytask.data.pareto_pairs` (36×36 canvases, shifts up to 4 pixels), tasks
``left`` and ``right`` (10 classes, cross-entropy), and the LeNet of the Pareto MTL code
(``multiMNIST/model_lenet.py``): conv 9×9 (10 channels), max-pool, ReLU; conv 5×5
(20 channels), max-pool, ReLU; dense 500→50, ReLU (shared); one linear 50→10 head per
task. Training defaults follow the COSMOS code's generic settings (Adam, lr 1e-3,
batch 256); ``options["pareto_ref"]`` is the hypervolume reference point (2, 2) of that
line of work.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from ..data.pareto_pairs import load_pareto_pairs
from ..models import Backbone
from ..tasks import Multiclass, Task
from .base import Benchmark, BenchmarkData, register
from .common import StagedEncoder, to_tensors


def pmtl_lenet_stages() -> list[nn.Module]:
    """The Pareto-MTL LeNet's shared part for 1×36×36 inputs, as three stages."""
    return [
        nn.Sequential(nn.Conv2d(1, 10, 9), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Conv2d(10, 20, 5), nn.MaxPool2d(2), nn.ReLU()),
        nn.Sequential(nn.Flatten(), nn.Linear(5 * 5 * 20, 50), nn.ReLU()),
    ]


def _tasks() -> dict[str, Task]:
    def head(in_features: int) -> nn.Module:
        return nn.Linear(in_features, 10)

    return {
        "left": Multiclass("left", num_classes=10, head=head),
        "right": Multiclass("right", num_classes=10, head=head),
    }


def _backbone(data: BenchmarkData) -> Backbone:
    return Backbone(
        make_encoder=lambda: StagedEncoder(pmtl_lenet_stages(), 50),
        out_features=50,
        make_stages=pmtl_lenet_stages,
        stage_channels=(10, 20, 50),
        input_shape=tuple(data.train.inputs.shape[1:]),
    )


def _load(name: str) -> Callable[[Path | None, int], BenchmarkData]:
    def run(data_dir: Path | None, seed: int) -> BenchmarkData:
        return to_tensors(load_pareto_pairs(name, data_dir, seed=seed))

    return run


def _benchmark(name: str, fetch: str, what: str) -> Benchmark:
    return Benchmark(
        name=f"pareto-{name}",
        description=f"{what}, the Pareto-MTL construction: 36×36, shifts up to 4, "
        "LeNet (Lin et al., NeurIPS 2019)",
        tasks=_tasks,
        load=_load(name),
        backbone=_backbone,
        report={"left": ("accuracy",), "right": ("accuracy",)},
        epochs=100,
        batch_size=256,
        lr=1e-3,
        fetch_name=fetch,
        options={"pareto_ref": (2.0, 2.0)},
    )


register("pareto-multimnist")(lambda: _benchmark("multimnist", "mnist", "MultiMNIST"))
register("pareto-multifashion")(
    lambda: _benchmark("multifashion", "fashion-mnist", "MultiFashion")
)
register("pareto-multifashion-mnist")(
    lambda: _benchmark("multifashion-mnist", "multifashion-mnist", "Multi-(Fashion+MNIST)")
)
