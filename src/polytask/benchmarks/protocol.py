"""Pieces of a benchmark's training protocol: LR schedules, epoch selection by Δm,
batch transforms (augmentation) — as Trainer callbacks and loader wrappers."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from ..metrics import delta_m
from ..training import Callback

SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


class SchedulerStep(Callback):
    """Builds a learning-rate scheduler on the Trainer's optimizer at the start of
    ``fit`` and steps it after every epoch (e.g. LibMTL's StepLR(100, 0.5))."""

    def __init__(self, factory: SchedulerFactory) -> None:
        self.factory = factory
        self.scheduler = None

    def on_fit_start(self, trainer) -> None:  # noqa: ANN001
        self.scheduler = self.factory(trainer.optimizer)
        for _ in range(trainer.epochs_done):  # a resumed run continues the schedule
            self.scheduler.step()

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:  # noqa: ANN001
        self.scheduler.step()


class BestByDeltaM(Callback):
    """Keeps the model weights of the epoch whose validation Δm against ``baselines``
    is highest (LibMTL's rule: its NYUv2 example validates on the test split)."""

    def __init__(self, baselines: Mapping, directions: Mapping, convention: str) -> None:
        self.baselines = baselines
        self.directions = directions
        self.convention = convention
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.state: dict | None = None

    def on_epoch_end(self, trainer, epoch: int, logs: dict[str, Any]) -> None:  # noqa: ANN001
        val = logs.get("val")
        if val is None:
            return
        results = {t: {m: val[f"{t}/{m}"] for m in ms} for t, ms in self.directions.items()}
        score = delta_m(results, self.baselines, self.directions, self.convention)
        if math.isnan(score) or (self.best is not None and score <= self.best):
            return
        self.best, self.best_epoch = score, epoch
        self.state = {k: v.detach().to("cpu", copy=True)
                      for k, v in copy.copy(trainer.model.state_dict()).items()}

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights into ``model`` (nothing when none was seen)."""
        if self.state is not None:
            model.load_state_dict(self.state)


class TransformedLoader:
    """A loader whose ``(inputs, targets)`` batches pass through ``transform`` (for
    training-time augmentation such as :func:`polytask.data.augment_batch`)."""

    def __init__(self, loader: Iterable, transform: Callable) -> None:
        self.loader = loader
        self.transform = transform

    def __iter__(self) -> Iterator:
        for batch in self.loader:
            inputs, targets = batch[0], batch[1]
            yield self.transform(inputs, targets)

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]
