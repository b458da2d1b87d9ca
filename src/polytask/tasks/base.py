"""Task specs: what a target is, how its head is built, its loss and its metrics.

A task is plain data: it holds no training state. Missing labels are marked per kind
by a sentinel (documented on each class) or by an explicit boolean ``mask``; a missing
label adds nothing to the loss or the metrics, and a batch with no label at all for a
task gives a loss of exactly zero that still belongs to the graph.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import LabelRangeError, ShapeMismatchError
from ..metrics import (
    AUC,
    F1,
    Accuracy,
    FunctionMetric,
    MeanAbsoluteError,
    Metric,
    RootMeanSquaredError,
)

HeadFactory = Callable[[int], nn.Module]


@dataclass(frozen=True, eq=False)
class Task:
    """Base class of every task.

    Args:
        name: the key of this task in model outputs and batches.
        auxiliary: trained but left out of Δm and model selection.
        head: a factory ``in_features -> nn.Module``; default a linear layer.
        inputs_from: tasks whose predictions this task's head also reads ("estimates as
            features"; see :mod:`polytask.tasks.graph`).
        detach_inputs: feed those predictions without gradient (default) or with it.
    """

    name: str
    auxiliary: bool = field(default=False, kw_only=True)
    head: HeadFactory | None = field(default=None, kw_only=True)
    inputs_from: tuple[str, ...] = field(default=(), kw_only=True)
    detach_inputs: bool = field(default=True, kw_only=True)

    kind = "task"

    @property
    def out_features(self) -> int:
        """Size of the head's output per sample."""
        raise NotImplementedError

    def build_head(self, in_features: int) -> nn.Module:
        """A head mapping ``in_features`` to this task's output."""
        if self.head is not None:
            return self.head(in_features)
        return nn.Linear(in_features, self.out_features)

    # -- per kind -------------------------------------------------------------------
    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Check and reshape output/target to the forms the loss uses."""
        raise NotImplementedError

    def _missing(self, target: Tensor) -> Tensor:
        """Boolean tensor, same shape as the reshaped target, True where missing."""
        return torch.zeros_like(target, dtype=torch.bool)

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        pass

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def predict(self, output: Tensor) -> Tensor:
        """The head's output in canonical form (values or probabilities), what the
        metrics and ``inputs_from`` read."""
        return output

    def prediction(self, output: Tensor) -> Tensor:
        """The prediction a user reads, in the task's natural form and shape: values
        for regression, probabilities for classification (see
        :func:`polytask.training.predict`). Metric objects take it as it is."""
        return self.predict(output)

    def metrics(self) -> dict[str, Metric]:
        """Fresh streaming metrics for this task, by name."""
        raise NotImplementedError

    @property
    def higher_is_better(self) -> dict[str, bool]:
        """For each metric, whether a higher value is better."""
        return {name: m.higher_is_better for name, m in self.metrics().items()}

    # -- shared machinery -----------------------------------------------------------
    def prepare(
        self, output: Tensor, target: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Validate shapes and labels; return (output, target, labeled) reshaped alike.

        ``labeled`` is True for every entry whose label is present.
        """
        if output.dim() == 0 or target.dim() == 0:
            raise ShapeMismatchError(
                f"task {self.name!r}: output {tuple(output.shape)} and target "
                f"{tuple(target.shape)} need a batch dimension"
            )
        if output.shape[0] != target.shape[0]:
            raise ShapeMismatchError(
                f"task {self.name!r}: output has batch size {output.shape[0]} "
                f"{tuple(output.shape)} but target has {target.shape[0]} {tuple(target.shape)}"
            )
        output, target = self._shape_output(output, target)
        labeled = ~self._missing(target)
        if mask is not None:
            mask = mask.to(device=labeled.device, dtype=torch.bool)
            if mask.shape != labeled.shape:
                if mask.shape != labeled.shape[:1]:
                    raise ShapeMismatchError(
                        f"task {self.name!r}: mask {tuple(mask.shape)} fits neither the "
                        f"batch ({labeled.shape[0]},) nor the target {tuple(labeled.shape)}"
                    )
                mask = mask.reshape(-1, *([1] * (labeled.dim() - 1))).expand_as(labeled)
            labeled = labeled & mask
        self._check_labels(target, labeled)
        return output, target, labeled

    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss over labeled entries; exactly zero (in the graph) when none is."""
        output, target, labeled = self.prepare(output, target, mask)
        safe_target = torch.where(labeled, target, torch.zeros_like(target))
        per_entry = self._elementwise_loss(output, safe_target)
        if per_entry.shape != labeled.shape:
            per_entry = per_entry.reshape(labeled.shape)
        weights = labeled.to(per_entry.dtype)
        count = weights.sum()
        return (per_entry * weights).sum() / count.clamp(min=1.0)

    def loss_count(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> int:
        """How many labelled entries the batch's :meth:`loss` averages over (its
        denominator): the weight of this batch in a mean over several batches, e.g.
        the micro-batches of gradient accumulation."""
        _, _, labeled = self.prepare(output.detach(), target, mask)
        return int(labeled.sum())

    def update_metrics(
        self,
        metrics: Mapping[str, Metric],
        output: Tensor,
        target: Tensor,
        mask: Tensor | None = None,
    ) -> None:
        """Feed the labeled samples of a batch to ``metrics``."""
        output, target, labeled = self.prepare(output.detach(), target, mask)
        pred = self.predict(output)
        rows = labeled.reshape(labeled.shape[0], -1).all(dim=1)
        if not bool(rows.any()):
            return
        for metric in metrics.values():
            metric.update(pred[rows], target[rows])


def _as_float_target(task: Task, target: Tensor) -> Tensor:
    if not torch.is_floating_point(target):
        target = target.float()
    return target


@dataclass(frozen=True, eq=False)
class Regression(Task):
    """A real-valued target of ``dim`` values per sample.

    Missing label: NaN (per entry). Loss: ``"mse"`` (default), ``"l1"`` or ``"huber"``.
    Metrics: MAE and RMSE (lower is better).
    """

    dim: int = 1
    loss_type: str = "mse"
    kind = "regression"

    @property
    def out_features(self) -> int:
        return self.dim

    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n = output.shape[0]
        target = _as_float_target(self, target)
        if output.reshape(n, -1).shape[1] != self.dim:
            raise ShapeMismatchError(
                f"task {self.name!r}: head output {tuple(output.shape)} does not fit a "
                f"regression of dim {self.dim} (expected ({n}, {self.dim}))"
            )
        if target.reshape(n, -1).shape[1] != self.dim:
            raise ShapeMismatchError(
                f"task {self.name!r}: target {tuple(target.shape)} does not fit a "
                f"regression of dim {self.dim} (expected ({n}, {self.dim}) or ({n},))"
            )
        return output.reshape(n, self.dim), target.reshape(n, self.dim)

    def _missing(self, target: Tensor) -> Tensor:
        return torch.isnan(target)

    def prediction(self, output: Tensor) -> Tensor:
        """The predicted values: (N,) for ``dim=1``, else (N, dim)."""
        n = output.shape[0]
        return output.reshape(n) if self.dim == 1 else output.reshape(n, self.dim)

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        if self.loss_type == "mse":
            return (output - target) ** 2
        if self.loss_type == "l1":
            return (output - target).abs()
        if self.loss_type == "huber":
            return F.huber_loss(output, target, reduction="none")
        raise ValueError(
            f"task {self.name!r}: unknown loss_type {self.loss_type!r} (mse, l1, huber)"
        )

    def metrics(self) -> dict[str, Metric]:
        return {"mae": MeanAbsoluteError(), "rmse": RootMeanSquaredError()}


NEGATIVE_LABELS = (0, -1)


def _binary_target(task: Task, target: Tensor) -> Tensor:
    """The target as floats in [0, 1] (NaN and -1 missing), mapping ±1 labels when
    the task declares ``negative_label=-1``."""
    target = _as_float_target(task, target)
    negative = task.negative_label  # type: ignore[attr-defined]
    if negative not in NEGATIVE_LABELS:
        raise ValueError(
            f"task {task.name!r}: negative_label must be 0 or -1, got {negative!r}"
        )
    if negative == -1:
        present = ~torch.isnan(target)
        values = target[present]
        bad = (values < -1) | (values > 1)
        if values.numel() and bool(bad.any()):
            raise LabelRangeError(
                f"task {task.name!r}: label {values[bad][0].item()} outside [-1, 1] (labels "
                "are -1 and +1 with negative_label=-1; missing labels are NaN or a mask)"
            )
        target = (target + 1) / 2  # -1 -> 0, +1 -> 1, NaN stays NaN
    return target


def _check_binary_values(task: Task, target: Tensor, labeled: Tensor) -> None:
    values = target[labeled]
    if values.numel() and bool(((values < 0) | (values > 1)).any()):
        bad = values[(values < 0) | (values > 1)][0].item()
        raise LabelRangeError(
            f"task {task.name!r}: label {bad} outside [0, 1] (missing labels are NaN or -1; "
            "for labels in {-1, +1} declare negative_label=-1)"
        )
    if task.negative_label == 0 and values.numel() and bool((target == -1).any()) \
            and not bool((values == 0).any()):  # type: ignore[attr-defined]
        warnings.warn(
            f"task {task.name!r}: this batch has labels 1 and -1 but no 0; -1 means a "
            "missing label here. If your labels are -1/+1, declare "
            f"{type(task).__name__}({task.name!r}, negative_label=-1)",
            RuntimeWarning, stacklevel=5,
        )


@dataclass(frozen=True, eq=False)
class Binary(Task):
    """A yes/no target: 0 or 1 (soft labels in [0, 1] allowed).

    The head outputs one logit. Missing label: NaN or -1. Labels in {-1, +1}: declare
    ``negative_label=-1`` (then only NaN, or a mask, marks a missing label); with the
    default ``negative_label=0``, a batch with 1 and -1 but no 0 warns. Loss: binary
    cross-entropy (optional ``pos_weight``). Metrics: accuracy, AUC and F1 (higher is
    better).
    """

    pos_weight: float | None = None
    negative_label: int = 0
    kind = "binary"

    @property
    def out_features(self) -> int:
        return 1

    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n = output.shape[0]
        if output.numel() != n:
            raise ShapeMismatchError(
                f"task {self.name!r}: head output {tuple(output.shape)} does not fit a binary "
                f"task (expected ({n},) or ({n}, 1): one logit per sample)"
            )
        if target.numel() != n:
            raise ShapeMismatchError(
                f"task {self.name!r}: target {tuple(target.shape)} does not fit a binary task "
                f"(expected ({n},))"
            )
        return output.reshape(n), _binary_target(self, target).reshape(n)

    def _missing(self, target: Tensor) -> Tensor:
        if self.negative_label == -1:
            return torch.isnan(target)
        return torch.isnan(target) | (target == -1)

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        _check_binary_values(self, target, labeled)

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        pos_weight = None
        if self.pos_weight is not None:
            pos_weight = torch.tensor(self.pos_weight, device=output.device, dtype=output.dtype)
        return F.binary_cross_entropy_with_logits(
            output, target.to(output.dtype), reduction="none", pos_weight=pos_weight
        )

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output)

    def prediction(self, output: Tensor) -> Tensor:
        """The probability of the positive class, (N,)."""
        return torch.sigmoid(output.reshape(output.shape[0]))

    def metrics(self) -> dict[str, Metric]:
        return {"accuracy": Accuracy(), "auc": AUC(), "f1": F1()}


MISSING_CLASS = (-1, -100)


@dataclass(frozen=True, eq=False)
class Multiclass(Task):
    """One class out of ``num_classes``: integer labels 0..num_classes-1.

    The head outputs ``num_classes`` logits. Missing label: -1 or -100 (PyTorch's
    ``ignore_index``). Loss: cross-entropy (optional ``label_smoothing``).
    Metrics: accuracy and macro F1.
    """

    num_classes: int = 2
    label_smoothing: float = 0.0
    kind = "multiclass"

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"task {self.name!r}: num_classes must be >= 2")

    @property
    def out_features(self) -> int:
        return self.num_classes

    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n = output.shape[0]
        if output.shape != (n, self.num_classes):
            raise ShapeMismatchError(
                f"task {self.name!r}: head output {tuple(output.shape)} does not fit "
                f"{self.num_classes} classes (expected ({n}, {self.num_classes}))"
            )
        if target.numel() != n or torch.is_floating_point(target):
            raise ShapeMismatchError(
                f"task {self.name!r}: target {tuple(target.shape)} {target.dtype} must hold "
                f"one integer label per sample (expected ({n},) integers)"
            )
        return output, target.reshape(n).long()

    def _missing(self, target: Tensor) -> Tensor:
        return (target == MISSING_CLASS[0]) | (target == MISSING_CLASS[1])

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        values = target[labeled]
        bad = (values < 0) | (values >= self.num_classes)
        if values.numel() and bool(bad.any()):
            raise LabelRangeError(
                f"task {self.name!r}: label {values[bad][0].item()} outside "
                f"0..{self.num_classes - 1} (missing labels are -1 or -100)"
            )

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(
            output, target, reduction="none", label_smoothing=self.label_smoothing
        )

    def predict(self, output: Tensor) -> Tensor:
        """Class probabilities (softmax of the logits), (N, C)."""
        return torch.softmax(output, dim=-1)

    def metrics(self) -> dict[str, Metric]:
        return {
            "accuracy": Accuracy(multiclass=True),
            "f1": F1(num_classes=self.num_classes),
        }


@dataclass(frozen=True, eq=False)
class MultiLabel(Task):
    """Several independent yes/no labels per sample: a (N, num_labels) 0/1 target.

    Missing label: NaN or -1, per entry (labels in {-1, +1}: ``negative_label=-1``, as
    for :class:`Binary`). Loss: binary cross-entropy averaged over labeled entries.
    Metrics: accuracy (mean over labels), macro AUC and macro F1.
    """

    num_labels: int = 2
    negative_label: int = 0
    kind = "multilabel"

    @property
    def out_features(self) -> int:
        return self.num_labels

    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        n = output.shape[0]
        expected = (n, self.num_labels)
        if output.shape != expected:
            raise ShapeMismatchError(
                f"task {self.name!r}: head output {tuple(output.shape)} does not fit "
                f"{self.num_labels} labels (expected {expected})"
            )
        if target.shape != expected:
            raise ShapeMismatchError(
                f"task {self.name!r}: target {tuple(target.shape)} does not fit "
                f"{self.num_labels} labels (expected {expected})"
            )
        return output, _binary_target(self, target)

    def _missing(self, target: Tensor) -> Tensor:
        if self.negative_label == -1:
            return torch.isnan(target)
        return torch.isnan(target) | (target == -1)

    def _check_labels(self, target: Tensor, labeled: Tensor) -> None:
        _check_binary_values(self, target, labeled)

    def _elementwise_loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(
            output, target.to(output.dtype), reduction="none"
        )

    def predict(self, output: Tensor) -> Tensor:
        return torch.sigmoid(output)

    def metrics(self) -> dict[str, Metric]:
        return {"accuracy": Accuracy(), "auc": AUC(), "f1": F1()}


LossFn = Callable[[Tensor, Tensor], Tensor]


@dataclass(frozen=True, eq=False)
class Custom(Task):
    """Any loss and metrics.

    Args:
        out_features: size of the head's output.
        loss_fn: ``(output, target) -> per-sample losses (N,)`` (or a scalar, then
            missing labels cannot be masked and ``mask`` must be None).
        metric_fns: ``{name: (fn(preds, targets) -> float, higher_is_better)}``.
        missing: optional ``target -> bool (N,)`` marking missing labels.
    """

    size: int = 1
    loss_fn: LossFn | None = None
    metric_fns: Mapping[str, tuple[Callable[[Tensor, Tensor], float], bool]] = field(
        default_factory=dict
    )
    missing: Callable[[Tensor], Tensor] | None = None
    kind = "custom"

    def __post_init__(self) -> None:
        if self.loss_fn is None:
            raise ValueError(f"task {self.name!r}: Custom needs a loss_fn")

    @property
    def out_features(self) -> int:
        return self.size

    def _shape_output(self, output: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return output, target

    def _missing(self, target: Tensor) -> Tensor:
        if self.missing is None:
            return torch.zeros(target.shape[0], dtype=torch.bool, device=target.device)
        return self.missing(target).reshape(target.shape[0]).bool()

    def loss(self, output: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        output, target, labeled = self.prepare(output, target, mask)
        if bool(labeled.all()):
            per_sample = self.loss_fn(output, target)
            return per_sample.mean() if per_sample.dim() else per_sample
        if not bool(labeled.any()):
            return output.sum() * 0.0
        per_sample = self.loss_fn(output[labeled], target[labeled])
        return per_sample.mean() if per_sample.dim() else per_sample

    def metrics(self) -> dict[str, Metric]:
        return {
            name: FunctionMetric(name, fn, higher)
            for name, (fn, higher) in self.metric_fns.items()
        }
