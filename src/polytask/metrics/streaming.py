"""Streaming metrics: update batch by batch, compute once per epoch.

Every metric receives only the labeled samples of its task (the task removes missing
labels first) and a prediction in the task's canonical form: values for regression,
probabilities for binary and multi-label tasks, logits for multiclass tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


def _group_size(group=None) -> int:  # noqa: ANN001  (a torch.distributed group)
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def _all_reduce_sum(values: Tensor, group=None) -> Tensor:  # noqa: ANN001
    """``values`` summed over the processes (on a CUDA copy under nccl)."""
    dist = torch.distributed
    work = values.cuda() if dist.get_backend(group) == "nccl" else values
    dist.all_reduce(work, group=group)
    return work.to(values.device)


def _all_gather(value: object, group=None) -> list:  # noqa: ANN001
    gathered: list = [None] * _group_size(group)
    torch.distributed.all_gather_object(gathered, value, group=group)
    return gathered


class Metric:
    """A streaming metric: ``update`` with batches, ``compute`` a float, ``reset``;
    ``reduce`` combines the states of every ``torch.distributed`` process, after which
    every rank computes the whole split's value (a statistic, not a mean of the
    ranks' values)."""

    name: str = "metric"
    higher_is_better: bool = True

    def reduce(self, group=None) -> None:  # noqa: ANN001  (a torch.distributed group)
        """Combine this metric's state over the processes (no-op in one process).
        A custom metric must implement it to be used on several processes."""
        if _group_size(group) > 1:
            raise NotImplementedError(
                f"metric {self.name!r} ({type(self).__name__}) cannot be combined across "
                "processes: implement reduce() (sum its state with all_reduce), or "
                "subclass FunctionMetric, which gathers every prediction"
            )

    def update(self, pred: Tensor, target: Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


class _SumMetric(Metric):
    """Keeps a running float64 sum and count."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._sum = 0.0
        self._count = 0

    def _add(self, values: Tensor) -> None:
        self._sum += float(values.detach().double().sum())
        self._count += values.numel()

    def _mean(self) -> float:
        return self._sum / self._count if self._count else float("nan")

    def reduce(self, group=None) -> None:  # noqa: ANN001
        """Sum the running sum and count over the processes."""
        if _group_size(group) == 1:
            return
        total = _all_reduce_sum(torch.tensor([self._sum, float(self._count)],
                                             dtype=torch.float64), group)
        self._sum, self._count = float(total[0]), int(total[1])


class MeanAbsoluteError(_SumMetric):
    """Mean absolute error over every labeled entry."""

    name = "mae"
    higher_is_better = False

    def update(self, pred: Tensor, target: Tensor) -> None:
        self._add((pred - target).abs())

    def compute(self) -> float:
        return self._mean()


class RootMeanSquaredError(_SumMetric):
    """Root of the mean squared error over every labeled entry."""

    name = "rmse"
    higher_is_better = False

    def update(self, pred: Tensor, target: Tensor) -> None:
        self._add((pred - target) ** 2)

    def compute(self) -> float:
        return float(np.sqrt(self._mean()))


class Accuracy(_SumMetric):
    """Fraction of correct predictions.

    Binary and multi-label predictions are probabilities thresholded at ``threshold``
    (multi-label accuracy is the mean over labels); multiclass predictions are logits.
    """

    name = "accuracy"

    def __init__(self, multiclass: bool = False, threshold: float = 0.5) -> None:
        self.multiclass = multiclass
        self.threshold = threshold
        super().__init__()

    def update(self, pred: Tensor, target: Tensor) -> None:
        if self.multiclass:
            correct = pred.argmax(dim=-1) == target
        else:
            correct = (pred >= self.threshold) == (target >= 0.5)
        self._add(correct.float())

    def compute(self) -> float:
        return self._mean()


class _StoringMetric(Metric):
    """Keeps every prediction and target (for metrics that need them all, like AUC)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._preds: list[Tensor] = []
        self._targets: list[Tensor] = []

    def update(self, pred: Tensor, target: Tensor) -> None:
        self._preds.append(pred.detach().float().cpu())
        self._targets.append(target.detach().cpu())

    def reduce(self, group=None) -> None:  # noqa: ANN001
        """Gather every process's predictions and targets (in rank order)."""
        if _group_size(group) == 1:
            return
        parts = _all_gather((self._preds, self._targets), group)
        self._preds = [p for preds, _ in parts for p in preds]
        self._targets = [t for _, targets in parts for t in targets]

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._preds:
            return np.zeros(0), np.zeros(0)
        return torch.cat(self._preds).numpy(), torch.cat(self._targets).numpy()


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    boundaries = np.flatnonzero(np.diff(sorted_values)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [len(values)]))
    ranks_sorted = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    ranks = np.empty(len(values))
    ranks[order] = ranks_sorted
    return ranks


def binary_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted as one half.

    NaN when only one class is present.
    """
    labels = labels >= 0.5
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def _f1(tp: float, fp: float, fn: float) -> float:
    denom = 2 * tp + fp + fn
    return 2 * tp / denom if denom else 0.0


class AUC(_StoringMetric):
    """ROC AUC of probabilities; multi-label: the macro average over labels.

    Labels whose samples hold a single class are left out of the average; with none
    left the result is NaN.
    """

    name = "auc"

    def compute(self) -> float:
        scores, labels = self._arrays()
        if scores.ndim <= 1:
            return binary_auc(scores.reshape(-1), labels.reshape(-1))
        aucs = [binary_auc(scores[:, j], labels[:, j]) for j in range(scores.shape[1])]
        aucs = [a for a in aucs if not np.isnan(a)]
        return float(np.mean(aucs)) if aucs else float("nan")


class F1(Metric):
    """F1 score: binary (positive class), or macro over classes/labels."""

    name = "f1"

    def __init__(self, num_classes: int | None = None, threshold: float = 0.5) -> None:
        self.num_classes = num_classes
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._tp = self._fp = self._fn = None

    def update(self, pred: Tensor, target: Tensor) -> None:
        if self.num_classes is not None:  # multiclass logits -> one-hot
            hard = torch.nn.functional.one_hot(pred.argmax(-1), self.num_classes).bool()
            truth = torch.nn.functional.one_hot(target.long(), self.num_classes).bool()
        else:
            hard = pred >= self.threshold
            truth = target >= 0.5
            if hard.dim() == 1:
                hard, truth = hard[:, None], truth[:, None]
        tp = (hard & truth).sum(0).double().cpu()
        fp = (hard & ~truth).sum(0).double().cpu()
        fn = (~hard & truth).sum(0).double().cpu()
        if self._tp is None:
            self._tp, self._fp, self._fn = tp, fp, fn
        else:
            self._tp += tp
            self._fp += fp
            self._fn += fn

    def reduce(self, group=None) -> None:  # noqa: ANN001
        """Sum the true/false positive and false negative counts over the processes
        (a rank that saw no sample adds nothing)."""
        if _group_size(group) == 1:
            return
        parts = [p for p in _all_gather((self._tp, self._fp, self._fn), group)
                 if p[0] is not None]
        if parts:
            self._tp, self._fp, self._fn = (sum(p[i] for p in parts) for i in range(3))

    def compute(self) -> float:
        if self._tp is None:
            return float("nan")
        scores = [
            _f1(float(t), float(p), float(n)) for t, p, n in zip(self._tp, self._fp, self._fn)
        ]
        return float(np.mean(scores))


class FunctionMetric(_StoringMetric):
    """A custom metric: ``fn(preds, targets) -> float`` on every stored sample."""

    def __init__(
        self, name: str, fn: Callable[[Tensor, Tensor], float], higher_is_better: bool
    ) -> None:
        self.name = name
        self.fn = fn
        self.higher_is_better = higher_is_better
        super().__init__()

    def compute(self) -> float:
        if not self._preds:
            return float("nan")
        return float(self.fn(torch.cat(self._preds), torch.cat(self._targets)))
