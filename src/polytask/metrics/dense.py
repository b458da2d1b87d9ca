"""Dense (per-pixel) metrics, accumulated as statistics over a whole split.

Each metric keeps sums and counts only — a confusion matrix, sums of errors and numbers
of valid pixels, a histogram of normal angles — never a mean of per-batch means, so the
result does not depend on how the split is cut into batches and the states of several
processes add up to the state of one process that saw every batch
(:meth:`DenseMetric.merge`, :meth:`DenseMetric.reduce`, :func:`reduce_metrics`).

Definitions follow the NYUv2 protocol of Liu, Johns & Davison (MTAN, CVPR 2019) as
LibMTL's ``examples/nyu/utils.py`` computes it, with two differences, both on purpose:

- depth errors: LibMTL averages per-batch pixel means weighted by the batch size; here
  the errors are summed over every valid pixel of the split and divided by their number
  (the per-pixel mean the protocol describes, independent of the batching);
- mIoU: LibMTL takes the plain mean of the per-class IoU, which is NaN as soon as one
  class appears neither in the labels nor in the predictions; here such classes are left
  out of the mean (they have no IoU), and the others count equally.

Every ``update`` takes ``(pred, target, valid)``: the task's canonical prediction, the
target, and a boolean (N, H, W) map of the pixels whose label is present.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .streaming import Metric

#: Width, in degrees, of the bins of the normal-angle histogram used for the median.
ANGLE_BIN_DEGREES = 1e-3
_ANGLE_BINS = round(180.0 / ANGLE_BIN_DEGREES)


class DenseMetric(Metric):
    """A metric whose whole state is a few tensors that add up across batches and ranks.

    Subclasses list the names of their state tensors in ``_state`` and create them in
    :meth:`reset`; :meth:`merge` adds another metric's state, :meth:`reduce` sums the
    state over the processes of ``torch.distributed``.
    """

    _state: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        raise NotImplementedError

    def state(self) -> dict[str, Tensor]:
        """The state tensors, by name (sums and counts)."""
        return {name: getattr(self, name) for name in self._state}

    def merge(self, other: DenseMetric) -> None:
        """Add the state of ``other`` (the same metric fed other batches) to this one."""
        if type(other) is not type(self):
            raise TypeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        for name in self._state:
            mine = getattr(self, name)
            setattr(self, name, mine + getattr(other, name).to(mine.device))

    def reduce(self, group=None) -> None:  # noqa: ANN001  (a torch.distributed group)
        """Sum the state over every process (``all_reduce``); a no-op without
        ``torch.distributed`` initialised. Afterwards every rank computes the result of
        the whole split."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        for name in self._state:
            tensor = getattr(self, name)
            if dist.get_backend(group) == "nccl" and tensor.device.type != "cuda":
                tensor = tensor.cuda()
            dist.all_reduce(tensor, group=group)
            setattr(self, name, tensor)

    @staticmethod
    def _flat_valid(target: Tensor, valid: Tensor | None, shape: torch.Size) -> Tensor:
        if valid is None:
            return torch.ones(shape, dtype=torch.bool, device=target.device)
        return valid.to(torch.bool)


def reduce_metrics(metrics, group=None) -> None:  # noqa: ANN001
    """Call :meth:`DenseMetric.reduce` on every dense metric of ``{name: metric}`` (or of
    ``{task: {name: metric}}``)."""
    for value in metrics.values():
        if isinstance(value, DenseMetric):
            value.reduce(group)
        elif isinstance(value, dict):
            reduce_metrics(value, group)


class ConfusionMatrix(DenseMetric):
    """The (num_classes × num_classes) confusion matrix of a segmentation, rows = label,
    columns = prediction, over every valid pixel. ``pred`` is logits (N, C, H, W) or
    class ids (N, H, W)."""

    _state = ("matrix",)

    def __init__(self, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        super().__init__()

    def reset(self) -> None:
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        labels = pred.argmax(dim=1) if pred.dim() == target.dim() + 1 else pred
        valid = self._flat_valid(target, valid, target.shape)
        c = self.num_classes
        index = target[valid].long() * c + labels[valid].long()
        counts = torch.bincount(index, minlength=c * c).reshape(c, c)
        self.matrix = self.matrix.to(counts.device) + counts

    def compute(self) -> float:
        return float("nan")


class MeanIoU(ConfusionMatrix):
    """Mean intersection over union over classes: IoU_c = TP / (TP + FP + FN).

    Classes absent from both the labels and the predictions of the whole split have no
    IoU and are left out of the mean (LibMTL's plain mean gives NaN there)."""

    name = "miou"
    higher_is_better = True

    def compute(self) -> float:
        h = self.matrix.double().cpu()
        tp = torch.diag(h)
        union = h.sum(0) + h.sum(1) - tp
        present = union > 0
        if not bool(present.any()):
            return float("nan")
        return float((tp[present] / union[present]).mean())


class PixelAccuracy(ConfusionMatrix):
    """Share of valid pixels whose predicted class is the label."""

    name = "pixel_accuracy"
    higher_is_better = True

    def compute(self) -> float:
        h = self.matrix.double().cpu()
        total = h.sum()
        return float(torch.diag(h).sum() / total) if total > 0 else float("nan")


class _PixelSum(DenseMetric):
    """A float64 sum of per-pixel values and the number of valid pixels."""

    _state = ("total", "count")
    higher_is_better = False

    def reset(self) -> None:
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.int64)

    def _add(self, values: Tensor) -> None:
        self.total = self.total.to(values.device) + values.double().sum()
        self.count = self.count.to(values.device) + values.numel()

    def compute(self) -> float:
        n = int(self.count)
        return float(self.total) / n if n else float("nan")


def _depth_pixels(pred: Tensor, target: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor]:
    pred = pred.reshape(pred.shape[0], *pred.shape[-2:])
    target = target.reshape(target.shape[0], *target.shape[-2:])
    if valid is None:
        valid = target != 0
    return pred[valid].double(), target[valid].double()


class DepthAbsError(_PixelSum):
    """Mean absolute depth error |d̂ − d| over every valid pixel of the split."""

    name = "abs_err"

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        p, t = _depth_pixels(pred, target, valid)
        self._add((p - t).abs())


class DepthRelError(_PixelSum):
    """Mean relative depth error |d̂ − d| / d over every valid pixel of the split."""

    name = "rel_err"

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        p, t = _depth_pixels(pred, target, valid)
        self._add((p - t).abs() / t.abs())


def normal_angles(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Angles in degrees between predicted and true normals (N, 3, H, W) at valid pixels.

    The prediction is normalised to unit length first; the cosine is clamped to [-1, 1].
    Without ``valid``, pixels whose true normal is the zero vector are left out."""
    if valid is None:
        valid = target.abs().sum(dim=1) != 0
    pred = pred / pred.norm(dim=1, keepdim=True).clamp_min(1e-12)
    cos = (pred.double() * target.double()).sum(dim=1)[valid]
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


class NormalAngleMean(_PixelSum):
    """Mean angular error of surface normals, in degrees, over every valid pixel."""

    name = "angle_mean"

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        self._add(normal_angles(pred, target, valid))


class NormalAngleMedian(DenseMetric):
    """Median angular error of surface normals, in degrees, over every valid pixel.

    The state is a histogram of the angles in bins of :data:`ANGLE_BIN_DEGREES`
    (0.001°): it adds up across batches and processes, and the median it gives is
    within one bin width of the exact median of all the angles (which would need
    every angle of the split kept, 72 M values on NYUv2)."""

    name = "angle_median"
    higher_is_better = False
    _state = ("histogram",)

    def reset(self) -> None:
        self.histogram = torch.zeros(_ANGLE_BINS, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        angles = normal_angles(pred, target, valid)
        bins = (angles / ANGLE_BIN_DEGREES).long().clamp_(0, _ANGLE_BINS - 1)
        counts = torch.bincount(bins, minlength=_ANGLE_BINS)
        self.histogram = self.histogram.to(counts.device) + counts

    def compute(self) -> float:
        hist = self.histogram.cpu()
        n = int(hist.sum())
        if n == 0:
            return float("nan")
        cumulative = torch.cumsum(hist, 0)

        def value(rank: int) -> float:  # the rank-th smallest angle (0-based), bin centre
            b = int(torch.searchsorted(cumulative, torch.tensor(rank + 1)))
            return (b + 0.5) * ANGLE_BIN_DEGREES

        if n % 2:
            return value(n // 2)
        return 0.5 * (value(n // 2 - 1) + value(n // 2))


class NormalWithin(_PixelSum):
    """Share of valid pixels whose normal's angular error is below ``degrees``
    (11.25, 22.5 and 30 in the protocol); a fraction in [0, 1]."""

    higher_is_better = True

    def __init__(self, degrees: float) -> None:
        self.degrees = float(degrees)
        self.name = f"within_{degrees:g}"
        super().__init__()

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        self._add((normal_angles(pred, target, valid) < self.degrees).double())


class _BinaryCounts(DenseMetric):
    """True/false positive and negative pixel counts of a per-pixel yes/no task;
    ``pred`` are probabilities, thresholded at ``threshold``."""

    _state = ("counts",)
    higher_is_better = True

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        super().__init__()

    def reset(self) -> None:
        self.counts = torch.zeros(4, dtype=torch.int64)  # tp, fp, fn, tn

    def update(self, pred: Tensor, target: Tensor, valid: Tensor | None = None) -> None:
        pred = pred.reshape(pred.shape[0], *pred.shape[-2:])
        target = target.reshape(target.shape[0], *target.shape[-2:])
        valid = self._flat_valid(target, valid, target.shape)
        hard = pred[valid] >= self.threshold
        truth = target[valid] >= 0.5
        counts = torch.stack([
            (hard & truth).sum(), (hard & ~truth).sum(), (~hard & truth).sum(),
            (~hard & ~truth).sum(),
        ]).long()
        self.counts = self.counts.to(counts.device) + counts

    def _c(self) -> tuple[float, float, float, float]:
        tp, fp, fn, tn = (float(v) for v in self.counts.cpu())
        return tp, fp, fn, tn


class BinaryIoU(_BinaryCounts):
    """IoU of the foreground: TP / (TP + FP + FN) over every valid pixel."""

    name = "iou"

    def compute(self) -> float:
        tp, fp, fn, _ = self._c()
        return tp / (tp + fp + fn) if tp + fp + fn else float("nan")


class BinaryF1(_BinaryCounts):
    """Pixel F-measure of the foreground, 2TP / (2TP + FP + FN), at one threshold."""

    name = "f1"

    def compute(self) -> float:
        tp, fp, fn, _ = self._c()
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


class BinaryPixelAccuracy(_BinaryCounts):
    """Share of valid pixels classified correctly."""

    name = "pixel_accuracy"

    def compute(self) -> float:
        tp, fp, fn, tn = self._c()
        total = tp + fp + fn + tn
        return (tp + tn) / total if total else float("nan")

