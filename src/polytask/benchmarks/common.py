"""Helpers shared by benchmark modules: numpy splits to tensors, default backbones."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..models import Backbone
from .base import BenchmarkData, Split


def to_tensors(data) -> BenchmarkData:  # noqa: ANN001  (a polytask.data train/val/test object)
    """Convert a loader's numpy train/val/test splits to tensors.

    Float targets stay float32 (binary, regression); integer ones become int64.
    """

    def convert(split) -> Split:  # noqa: ANN001
        targets = {}
        for name, y in split.targets.items():
            y = np.asarray(y)
            dtype = torch.long if np.issubdtype(y.dtype, np.integer) else torch.float32
            targets[name] = torch.as_tensor(y, dtype=dtype)
        return Split(torch.as_tensor(np.asarray(split.x, dtype=np.float32)), targets)

    return BenchmarkData(convert(data.train), convert(data.val), convert(data.test))


class MLP(nn.Sequential):
    """Linear + ReLU layers; ``out_features`` is the last width."""

    def __init__(self, in_features: int, hidden: tuple[int, ...]) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_features, width), nn.ReLU()]
            in_features = width
        super().__init__(*layers)
        self.out_features = in_features


def mlp_stages(in_features: int, hidden: tuple[int, ...]) -> list[nn.Module]:
    """The MLP as a list of stages (one Linear + ReLU each)."""
    stages = []
    for width in hidden:
        stages.append(nn.Sequential(nn.Linear(in_features, width), nn.ReLU()))
        in_features = width
    return stages


def mlp_backbone(hidden: tuple[int, ...]) -> Callable[[BenchmarkData], Backbone]:
    """``data -> Backbone``: an MLP of widths ``hidden`` over flat inputs (every architecture
    gets it as its encoder, and as stages for the ones that branch or cross-stitch)."""

    def build(data: BenchmarkData) -> Backbone:
        d = data.train.inputs.shape[1]
        return Backbone(
            make_encoder=lambda: MLP(d, hidden),
            out_features=hidden[-1],
            make_stages=lambda: mlp_stages(d, hidden),
            stage_channels=hidden,
            input_shape=(d,),
        )

    return build


def lenet_stages(
    image_size: int, channels: tuple[int, int], kernel: int, padding: int, hidden: int
) -> list[nn.Module]:
    """A LeNet-style CNN as three stages: conv-pool-ReLU twice, then a dense layer."""
    size = image_size
    stages: list[nn.Module] = []
    in_channels = 1
    for out_channels in channels:
        stages.append(
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel, padding=padding),
                nn.MaxPool2d(2),
                nn.ReLU(),
            )
        )
        size = (size + 2 * padding - kernel + 1) // 2
        in_channels = out_channels
    stages.append(
        nn.Sequential(nn.Flatten(), nn.Linear(in_channels * size * size, hidden), nn.ReLU())
    )
    return stages


class StagedEncoder(nn.Sequential):
    """A sequence of stages used as one encoder; ``out_features`` is given."""

    def __init__(self, stages: list[nn.Module], out_features: int) -> None:
        super().__init__(*stages)
        self.out_features = out_features
