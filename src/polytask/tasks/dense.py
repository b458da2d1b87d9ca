"""Dense (per-pixel) tasks: semantic segmentation, depth, surface normals, yes/no maps.

A dense task's head maps a (N, C, H, W) feature map to a (N, out_channels, H, W)
prediction at the label's resolution. A pixel whose label is missing — the ignore value
of a segmentation or yes/no map, depth 0, the zero normal vector, NaN — adds nothing to
the loss or the metrics; so does every pixel of a sample whose ``mask`` entry is False
(a mask may be per sample, (N,), or per pixel, (N, H, W)). Losses are means over the
valid pixels of the batch; metrics are accumulated over every valid pixel of the split
(:mod:`polytask.metrics.dense`).

The losses are those of the NYUv2/Cityscapes protocol (Liu, Johns & Davison, CVPR 2019;
LibMTL): pixel-wise cross-entropy, L1 on depth, 1 − cosine on normals.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LabelRangeError, ShapeMismatchError
from ..metrics import (
    BinaryF1,
    BinaryIoU,
    BinaryPixelAccuracy,
    DepthAbsError,
    DepthRelError,
    MeanIoU,
    Metric,
    NormalAngleMean,
    NormalAngleMedian,
    NormalWithin,
    PixelAccuracy,
)
from .base import Task


def dense_head(in_channels: int, out_channels: int) -> nn.Module:
    """The prediction layer of the MTAN paper's SegNet: a 3×3 convolution keeping the
    channels, then a 1×1 convolution to the task's channels."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1),
        nn.Conv2d(in_channels, out_channels, 1),
    )


@dataclass(frozen=True, eq=False)
class DenseTask(Task):
    """Base class of per-pixel tasks. ``head``, when given, is a factory
    ``in_channels -> nn.Module``; the default is :func:`dense_head`."""

    dense = True
    kind = "dense"

    @property
    def out_channels(self) -> int:
        """Channels of the head's output."""
        raise NotImplementedError

    @property
    def out_features(self) -> int:
        return self.out_channels

    def build_head(self, in_features: int) -> nn.Module:
        """A head mapping ``in_features`` channels to this task's ``out_channels``."""
        if self.head is not None:
            return self.head(in_features)
        return dense_head(in_features, self.out_channels)

    # -- per kind -------------------------------------------------------------------
    def _target(self, target: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        """Check the target's shape against (n, ..., *size); return it in loss form."""
        raise NotImplementedError

    def _valid(self, target: Tensor) -> Tensor:
        """(N, H, W) True where the pixel's label is present."""
        raise NotImplementedError

    def _pixel_loss(self, output: Tensor, target: Tensor) -> Tensor:
        """(N, H, W) loss per pixel (targets at invalid pixels are already made safe)."""
        raise NotImplementedError

    def _safe(self, target: Tensor, valid: Tensor) -> Tensor:
        return torch.where(_expand(valid, target), target, torch.zeros_like(target))

    # -- shared machinery -----------------------------------------------------------
    def prepare(
        self, output: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Validate shapes and labels; return (output, target, valid) with ``valid`` a
        boolean (N, H, W) map of the pixels that count."""
        if output.dim() != 4 or output.shape[1] != self.out_channels:
            raise ShapeMismatchError(
                f"task {self.name!r}: head output {tuple(output.shape)} is not a dense "
                f"prediction (N, {self.out_channels}, H, W)"
            )
        n, size = output.shape[0], tuple(output.shape[-2:])
        if target.dim() == 0 or target.shape[0] != n:
            raise ShapeMismatchError(
                f"task {self.name!r}: output has batch size {n} {tuple(output.shape)} but "
                f"target is {tuple(target.shape)}"
            )
        target = self._target(target, n, size)
        valid = self._valid(target)
        if mask is not None:
            mask = mask.to(device=valid.device, dtype=torch.bool)
            if mask.shape == (n,):
                mask = mask.reshape(n, 1, 1)
            elif mask.shape == (n, 1, *size):
                mask = mask[:, 0]
            elif mask.shape != (n, *size):
                raise ShapeMismatchError(
                    f"task {self.name!r}: mask {tuple(mask.shape)} fits neither the batch "
                    f"({n},) nor the pixels {(n, *size)}"
                )
            valid = valid & mask
        self._check_labels(target, valid)
        return output, target, valid

    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss over the valid pixels of the batch; exactly zero (in the graph)
        when no pixel is valid."""
        output, target, valid = self.prepare(output, target, mask)
        per_pixel = self._pixel_loss(output, self._safe(target, valid))
        weights = valid.to(per_pixel.dtype)
        return (per_pixel * weights).sum() / weights.sum().clamp(min=1.0)

    def update_metrics(
        self,
        metrics: Mapping[str, Metric],
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
    ) -> None:
        """Feed the valid pixels of a batch to ``metrics``."""
        output, target, valid = self.prepare(output.detach(), target, mask)
        if not bool(valid.any()):
            return
        pred = self.predict(output)
        for metric in metrics.values():
            metric.update(pred, target, valid)


def _expand(valid: Tensor, like: Tensor) -> Tensor:
    """(N, H, W) -> broadcastable to ``like`` (N, H, W) or (N, C, H, W)."""
    return valid if like.dim() == valid.dim() else valid[:, None]


def _spatial_target(task: DenseTask, output_shape: tuple, target: Tensor, n: int,
                    size: tuple[int, int], channels: int) -> Tensor:
    """A target of shape (n, channels, *size) — or (n, *size) when channels is 1 —
    returned as (n, *size) for one channel and (n, channels, *size) otherwise."""
    shape = tuple(target.shape)
    if channels == 1:
        if shape == (n, *size):
            return target
        if shape == (n, 1, *size):
            return target[:, 0]
        expected = f"({n}, {size[0]}, {size[1]}) or ({n}, 1, {size[0]}, {size[1]})"
    else:
        if shape == (n, channels, *size):
            return target
        expected = f"({n}, {channels}, {size[0]}, {size[1]})"
    raise ShapeMismatchError(
        f"task {task.name!r}: target {shape} does not fit the prediction {output_shape} "
        f"(expected {expected}: a label map of the prediction's size)"
    )


@dataclass(frozen=True, eq=False)
class Segmentation(DenseTask):
    """Per-pixel classification into ``num_classes`` classes (semantic segmentation).

    Target: (N, H, W) class ids (integers, or floats holding integers as LibMTL's
    loaders give). Missing label: ``ignore_index`` (default -1, as in the MTAN and LibMTL
    preprocessed data). Loss: cross-entropy averaged over labeled pixels. Metrics: mIoU
    and pixel accuracy from the split's confusion matrix.
    """

    num_classes: int = 2
    ignore_index: int = -1
    kind = "segmentation"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"task {self.name!r}: num_classes must be >= 2")

    @property
    def out_channels(self) -> int:
        return self.num_classes

    def _target(self, target: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        target = _spatial_target(self, (n, self.num_classes, *size), target, n, size, 1)
        if torch.is_floating_point(target):
            finite = torch.isfinite(target)
            if not bool(finite.all()) or not bool((target == target.round()).all()):
                bad = target[~finite | (target != target.round())][0].item()
                raise LabelRangeError(
                    f"task {self.name!r}: label map holds {bad}, not a class id"
                )
        return target.long()

    def _valid(self, target: Tensor) -> Tensor:
        return target != self.ignore_index

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        values = target[labeled]
        bad = (values < 0) | (values >= self.num_classes)
        if values.numel() and bool(bad.any()):
            raise LabelRangeError(
                f"task {self.name!r}: class id {values[bad][0].item()} outside "
                f"0..{self.num_classes - 1} (the ignore value is {self.ignore_index})"
            )

    def _pixel_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output, target, reduction="none")

    def metrics(self) -> dict[str, Metric]:
        return {
            "miou": MeanIoU(self.num_classes),
            "pixel_accuracy": PixelAccuracy(self.num_classes),
        }


@dataclass(frozen=True, eq=False)
class Depth(DenseTask):
    """Per-pixel depth regression. Target (N, H, W) or (N, 1, H, W); a depth of 0 (or
    NaN) marks a pixel without measurement. Loss: L1 averaged over valid pixels.
    Metrics: absolute and relative error over every valid pixel of the split."""

    kind = "depth"

    @property
    def out_channels(self) -> int:
        return 1

    def _target(self, target: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        target = _spatial_target(self, (n, 1, *size), target, n, size, 1)
        return target if torch.is_floating_point(target) else target.float()

    def _valid(self, target: Tensor) -> Tensor:
        return (target != 0) & torch.isfinite(target)

    def _pixel_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return (output[:, 0] - target.to(output.dtype)).abs()

    def metrics(self) -> dict[str, Metric]:
        return {"abs_err": DepthAbsError(), "rel_err": DepthRelError()}


@dataclass(frozen=True, eq=False)
class SurfaceNormal(DenseTask):
    """Per-pixel surface normals: a unit 3-vector per pixel, target (N, 3, H, W).

    The zero vector (or any NaN component) marks a pixel without a normal. A valid
    normal whose length differs from 1 by more than ``tolerance`` is an error. The
    prediction is normalised to unit length. Loss: 1 − cos(n̂, n) averaged over valid
    pixels. Metrics: mean and median angular error in degrees, and the share of pixels
    within 11.25°, 22.5° and 30°.

    LibMTL and the MTAN code mark a missing normal by a zero *sum* of its components,
    which also drops the (measure-zero) valid normals whose components sum to 0; here
    a normal is missing when all its components are 0.
    """

    tolerance: float = 1e-3
    kind = "surface_normal"

    @property
    def out_channels(self) -> int:
        return 3

    def _target(self, target: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        target = _spatial_target(self, (n, 3, *size), target, n, size, 3)
        return target if torch.is_floating_point(target) else target.float()

    def _valid(self, target: Tensor) -> Tensor:
        return (target != 0).any(dim=1) & torch.isfinite(target).all(dim=1)

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        norms = target.norm(dim=1)
        bad = labeled & ((norms - 1).abs() > self.tolerance)
        if bool(bad.any()):
            i, y, x = (int(v) for v in bad.nonzero()[0])
            raise LabelRangeError(
                f"task {self.name!r}: the normal at sample {i}, pixel (y={y}, x={x}) has "
                f"length {float(norms[i, y, x]):.4f}, not 1 (tolerance {self.tolerance}); "
                "normals must be unit vectors, or all zero where missing"
            )

    def predict(self, output: Tensor) -> Tensor:
        return output / output.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def _pixel_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return 1.0 - (self.predict(output) * target.to(output.dtype)).sum(dim=1)

    def metrics(self) -> dict[str, Metric]:
        return {
            "angle_mean": NormalAngleMean(),
            "angle_median": NormalAngleMedian(),
            "within_11.25": NormalWithin(11.25),
            "within_22.5": NormalWithin(22.5),
            "within_30": NormalWithin(30.0),
        }


@dataclass(frozen=True, eq=False)
class PixelBinary(DenseTask):
    """A per-pixel yes/no map (edges, saliency, foreground): target (N, H, W) or
    (N, 1, H, W) in {0, 1} (soft labels in [0, 1] allowed).

    The head outputs one logit per pixel. Missing label: ``ignore_index`` (default -1;
    PASCAL-Context edge and saliency maps often use 255) or NaN. Loss: binary
    cross-entropy, with ``pos_weight`` for rare positives (edges). Metrics at threshold
    0.5: foreground IoU, pixel F-measure and pixel accuracy (the boundary-tolerant
    ODS F-measure of edge detection is not computed).
    """

    ignore_index: float = -1
    pos_weight: float | None = None
    kind = "pixel_binary"

    @property
    def out_channels(self) -> int:
        return 1

    def _target(self, target: Tensor, n: int, size: tuple[int, int]) -> Tensor:
        target = _spatial_target(self, (n, 1, *size), target, n, size, 1)
        return target if torch.is_floating_point(target) else target.float()

    def _valid(self, target: Tensor) -> Tensor:
        return (target != self.ignore_index) & ~torch.isnan(target)

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        values = target[labeled]
        bad = (values < 0) | (values > 1)
        if values.numel() and bool(bad.any()):
            raise LabelRangeError(
                f"task {self.name!r}: pixel label {values[bad][0].item()} outside [0, 1] "
                f"(the ignore value is {self.ignore_index})"
            )

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output)

    def _pixel_loss(self, output: Tensor, target: Tensor) -> Tensor:
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, device=output.device, dtype=output.dtype)
        return F.binary_cross_entropy_with_logits(
            output[:, 0], target.to(output.dtype), reduction="none", pos_weight=pos_weight
        )

    def metrics(self) -> dict[str, Metric]:
        return {"iou": BinaryIoU(), "f1": BinaryF1(), "pixel_accuracy": BinaryPixelAccuracy()}


def is_dense(task: Task) -> bool:
    """True for a per-pixel task (its head maps feature maps to prediction maps)."""
    return bool(getattr(task, "dense", False))
