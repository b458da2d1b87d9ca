"""Dense-prediction benchmarks: NYUv2, Cityscapes and the offline dense MultiMNIST.

Presets (``polytask bench NAME --data DIR``):

- ``nyuv2``: NYUv2 (13-class segmentation, depth, normals; 795 train / 654 test images
  of 288×384) on SegNet, with LibMTL's ``examples/nyu/main_segnet.py`` protocol: Adam,
  lr 1e-4, no weight decay, StepLR (step 100 epochs, γ 0.5), 200 epochs, batch size 2,
  the standard augmentation, Δm averaged within each task first (LibMTL's convention),
  and the reported epoch the one of best Δm on the test split (LibMTL validates on it;
  NYUv2 has no separate validation split). The published equal-weighting row of the
  MTAN/LibMTL tables is ``--arch mtan_segnet --methods ew``.
- ``nyuv2-resnet50``: LibMTL's ``examples/nyu/main.py``: a dilated ResNet-50 encoder with
  one DeepLabV3 ASPP head per task (needs the ``deeplab`` extra; ImageNet weights only
  from a local file, ``--weights PATH``), Adam lr 1e-4, weight decay 1e-5, StepLR
  (100, 0.5), 200 epochs, batch size 8, no augmentation, same selection and Δm.
- ``cityscapes``: Cityscapes (7-class segmentation and depth; 2,975 / 500 images of
  128×256) on SegNet, the MTAN paper's setting (batch size 8) with LibMTL's optimiser,
  schedule, selection and Δm; ``cityscapes-resnet50``: LibMTL's ``examples/cityscapes``
  (batch size 64, weight decay 1e-5).
- ``dense-multimnist``: polytask's offline construction from real MNIST digits
  (:mod:`polytask.data.dense_mnist`): segmentation, depth and normals on the 36×36
  canvas, a small SegNet, sized for a CPU. Δm weighs every metric equally here.

Architectures on the SegNet presets: ``hard``, ``cross_stitch``, ``mtan`` and
``branched`` run on the SegNet's stages (decoder upsampling by interpolation, see
:mod:`polytask.models.segnet`); ``segnet`` is hard sharing on the index-unpooling SegNet
and ``mtan_segnet`` the authors' MTAN.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import data as datasets
from ..errors import PolytaskError
from ..models import Backbone, StagedDense, segnet_stages
from ..models.segnet import SEGNET_CONVS, SEGNET_FILTERS
from ..tasks import Depth, Segmentation, SurfaceNormal, Task
from .base import Benchmark, BenchmarkData, Split, register

NORMAL_METRICS = ("angle_mean", "angle_median", "within_11.25", "within_22.5", "within_30")


def _libmtl_schedule(optimizer: torch.optim.Optimizer):  # noqa: ANN202
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)


def _to_split(split) -> Split:  # noqa: ANN001  (a numpy split with x and targets)
    targets = {}
    for name, y in split.targets.items():
        y = np.asarray(y)
        dtype = torch.long if np.issubdtype(y.dtype, np.integer) else torch.float32
        targets[name] = torch.as_tensor(y, dtype=dtype)
    return Split(torch.as_tensor(np.asarray(split.x, dtype=np.float32)), targets)


def _segnet_backbone(filters: tuple[int, ...], convs: tuple[int, ...]
                     ) -> Callable[[BenchmarkData], Backbone]:
    def build(data: BenchmarkData) -> Backbone:
        shape = tuple(data.train.inputs.shape[1:])

        def stages() -> list[nn.Module]:
            return segnet_stages(shape[0], filters, convs)

        return Backbone(
            make_encoder=lambda: StagedDense(stages(), filters[0]),
            out_features=filters[0],
            make_stages=stages,
            stage_channels=tuple(filters) + tuple(reversed((filters[0],) + tuple(filters[:-1]))),
            input_shape=shape,
            options={"filters": tuple(filters), "convs": tuple(convs)},
        )

    return build


def _resnet_backbone(benchmark: Benchmark) -> Callable[[BenchmarkData], Backbone]:
    def build(data: BenchmarkData) -> Backbone:
        from ..models.deeplab import resnet50_stages

        weights = benchmark.options.get("weights")
        stages = lambda: resnet50_stages(weights)  # noqa: E731
        return Backbone(
            make_encoder=lambda: _Channels(nn.Sequential(*stages()), 2048),
            out_features=2048,
            make_stages=stages,
            stage_channels=(256, 512, 1024, 2048),
            input_shape=tuple(data.train.inputs.shape[1:]),
        )

    return build


class _Channels(nn.Module):
    def __init__(self, module: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.module = module
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _nyu_tasks(heads: str) -> Callable[[], dict[str, Task]]:
    def build() -> dict[str, Task]:
        kw: dict[str, dict] = {"segmentation": {}, "depth": {}, "normal": {}}
        if heads == "aspp":
            from ..models.deeplab import aspp_head_factory

            kw = {"segmentation": {"head": aspp_head_factory(13)},
                  "depth": {"head": aspp_head_factory(1)},
                  "normal": {"head": aspp_head_factory(3)}}
        return {
            "segmentation": Segmentation("segmentation", num_classes=13, **kw["segmentation"]),
            "depth": Depth("depth", **kw["depth"]),
            "normal": SurfaceNormal("normal", **kw["normal"]),
        }

    return build


def _city_tasks(heads: str, classes: int) -> Callable[[], dict[str, Task]]:
    def build() -> dict[str, Task]:
        kw: dict[str, dict] = {"segmentation": {}, "depth": {}}
        if heads == "aspp":
            from ..models.deeplab import aspp_head_factory

            kw = {"segmentation": {"head": aspp_head_factory(classes)},
                  "depth": {"head": aspp_head_factory(1)}}
        return {
            "segmentation": Segmentation("segmentation", num_classes=classes,
                                         **kw["segmentation"]),
            "depth": Depth("depth", **kw["depth"]),
        }

    return build


def _need_dir(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise PolytaskError(
            f"{name}: give the directory of the preprocessed data (--data DIR); polytask "
            "cannot download it — see docs/dense.md for where to get it"
        )
    return Path(data_dir)


def _nyu_load(data_dir: Path | None, seed: int) -> BenchmarkData:
    raw = datasets.load_nyuv2(_need_dir(data_dir, "NYUv2"))
    test = _to_split(raw.val)
    return BenchmarkData(_to_split(raw.train), test, test)


def _city_load(classes: int) -> Callable[[Path | None, int], BenchmarkData]:
    def load(data_dir: Path | None, seed: int) -> BenchmarkData:
        raw = datasets.load_cityscapes(_need_dir(data_dir, "Cityscapes"), classes)
        test = _to_split(raw.val)
        return BenchmarkData(_to_split(raw.train), test, test)

    return load


_NYU_REPORT = {"segmentation": ("miou", "pixel_accuracy"), "depth": ("abs_err", "rel_err"),
               "normal": NORMAL_METRICS}
_CITY_REPORT = {"segmentation": ("miou", "pixel_accuracy"), "depth": ("abs_err", "rel_err")}


def _libmtl_options(**extra) -> dict:  # noqa: ANN003
    return {"scheduler": _libmtl_schedule, "select": "delta_m", "delta_m": "task",
            "drop_last": True, **extra}


def _augment(inputs: torch.Tensor, targets: dict) -> tuple:
    return datasets.augment_batch(inputs, targets)


register("nyuv2")(lambda: Benchmark(
    name="nyuv2",
    description="NYUv2 segmentation/depth/normals on SegNet, LibMTL's main_segnet.py "
    "protocol (Liu et al., CVPR 2019; Lin & Zhang, LibMTL, JMLR 2023)",
    tasks=_nyu_tasks("segnet"), load=_nyu_load,
    backbone=_segnet_backbone(SEGNET_FILTERS, SEGNET_CONVS), report=_NYU_REPORT,
    epochs=200, batch_size=2, lr=1e-4, weight_decay=0.0,
    options=_libmtl_options(train_transform=_augment, eval_batch_size=16),
))


def _nyu_resnet() -> Benchmark:
    b = Benchmark(
        name="nyuv2-resnet50",
        description="NYUv2 on a dilated ResNet-50 with DeepLabV3 heads, LibMTL's "
        "examples/nyu/main.py protocol (needs torchvision)",
        tasks=_nyu_tasks("aspp"), load=_nyu_load, backbone=lambda d: None,  # set below
        report=_NYU_REPORT, epochs=200, batch_size=8, lr=1e-4, weight_decay=1e-5,
        options=_libmtl_options(eval_batch_size=8),
    )
    b.backbone = _resnet_backbone(b)
    return b


register("nyuv2-resnet50")(_nyu_resnet)

register("cityscapes")(lambda: Benchmark(
    name="cityscapes",
    description="Cityscapes 7-class segmentation and depth on SegNet (MTAN's setting, "
    "LibMTL's optimiser, schedule and selection)",
    tasks=_city_tasks("segnet", 7), load=_city_load(7),
    backbone=_segnet_backbone(SEGNET_FILTERS, SEGNET_CONVS), report=_CITY_REPORT,
    epochs=200, batch_size=8, lr=1e-4, weight_decay=0.0,
    options=_libmtl_options(eval_batch_size=8),
))


def _city_resnet() -> Benchmark:
    b = Benchmark(
        name="cityscapes-resnet50",
        description="Cityscapes on a dilated ResNet-50 with DeepLabV3 heads, LibMTL's "
        "examples/cityscapes protocol (needs torchvision)",
        tasks=_city_tasks("aspp", 7), load=_city_load(7), backbone=lambda d: None,
        report=_CITY_REPORT, epochs=200, batch_size=64, lr=1e-4, weight_decay=1e-5,
        options=_libmtl_options(eval_batch_size=64),
    )
    b.backbone = _resnet_backbone(b)
    return b


register("cityscapes-resnet50")(_city_resnet)

#: The offline benchmark's size: MNIST images per split, SegNet filters and convolutions.
DENSE_MNIST_SIZES = (600, 300, 500)
DENSE_MNIST_FILTERS = (8, 16)
DENSE_MNIST_CONVS = (1, 1)


def _mnist_dense_tasks() -> dict[str, Task]:
    return {
        "segmentation": Segmentation("segmentation", num_classes=3),
        "depth": Depth("depth"),
        "normal": SurfaceNormal("normal"),
    }


def _mnist_dense_load(data_dir: Path | None, seed: int) -> BenchmarkData:
    splits = datasets.load_dense_multimnist(data_dir, seed=0, sizes=DENSE_MNIST_SIZES)
    return BenchmarkData(*(_to_split(splits[s]) for s in ("train", "val", "test")))


register("dense-multimnist")(lambda: Benchmark(
    name="dense-multimnist",
    description="dense MultiMNIST: which-digit segmentation, depth and normals of two "
    "overlapping MNIST digits on a 36×36 canvas (polytask's construction)",
    tasks=_mnist_dense_tasks, load=_mnist_dense_load,
    backbone=_segnet_backbone(DENSE_MNIST_FILTERS, DENSE_MNIST_CONVS),
    report={"segmentation": ("miou", "pixel_accuracy"), "depth": ("abs_err", "rel_err"),
            "normal": ("angle_mean", "angle_median", "within_11.25")},
    epochs=5, batch_size=32, lr=3e-3, fetch_name="mnist",
    options={"eval_batch_size": 250, "select": "loss"},
))
