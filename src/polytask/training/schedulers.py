"""Learning-rate schedules as a Trainer callback.

``Trainer(scheduler=..., scheduler_interval="epoch" | "step")`` wraps a torch
scheduler (or a factory ``optimizer -> scheduler``) in :class:`LRScheduling`, which
the Trainer runs among its callbacks: the scheduler is stepped after every epoch
(``"epoch"``, the default, as Lightning's) or after every optimizer step that was
taken (``"step"``; a step the fp16 loss scaler skipped does not advance the
schedule). ``ReduceLROnPlateau`` is stepped once per epoch with the Trainer's
monitored value. Its state is checkpointed, so a resumed run follows the schedule of
an uninterrupted one exactly.

Extra cost per step: one ``scheduler.step()`` (a few float operations per group).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from ..errors import PolytaskError
from .callbacks import Callback

if TYPE_CHECKING:
    from .trainer import Trainer

INTERVALS = ("epoch", "step")
Scheduler = LRScheduler | ReduceLROnPlateau


class LRScheduling(Callback):
    """Steps a learning-rate scheduler per epoch or per optimizer step.

    Args:
        scheduler: a torch scheduler over the Trainer's optimizer, or a factory
            ``optimizer -> scheduler`` (called once the optimizer exists).
        interval: "epoch" or "step".
    """

    def __init__(
        self,
        scheduler: Scheduler | Callable[[torch.optim.Optimizer], Scheduler],
        interval: str = "epoch",
    ) -> None:
        if interval not in INTERVALS:
            raise PolytaskError(
                f"scheduler_interval must be one of {INTERVALS}, got {interval!r}"
            )
        self._given = scheduler
        self.interval = interval
        self.scheduler: Scheduler | None = None

    def bind(self, optimizer: torch.optim.Optimizer) -> Scheduler:
        """Build (a factory) or check (a scheduler) against the Trainer's optimizer."""
        given = self._given
        if isinstance(given, (LRScheduler, ReduceLROnPlateau)):
            scheduler = given
        elif callable(given):
            scheduler = given(optimizer)
        else:
            raise PolytaskError(
                "scheduler must be a torch.optim.lr_scheduler scheduler or a factory "
                f"optimizer -> scheduler, got {type(given).__name__}"
            )
        if not isinstance(scheduler, (LRScheduler, ReduceLROnPlateau)):
            raise PolytaskError(
                f"the scheduler factory returned {type(scheduler).__name__}, not a "
                "torch.optim.lr_scheduler scheduler"
            )
        if scheduler.optimizer is not optimizer:
            raise PolytaskError(
                "the scheduler steps another optimizer than the Trainer's: build it on "
                "trainer.optimizer, or give a factory optimizer -> scheduler"
            )
        if isinstance(scheduler, ReduceLROnPlateau) and self.interval != "epoch":
            raise PolytaskError("ReduceLROnPlateau needs scheduler_interval='epoch'")
        self.scheduler = scheduler
        return scheduler

    def on_optimizer_step(self, trainer: Trainer, optimizer: Any, stepped: bool) -> None:
        if self.interval == "step" and stepped and self.scheduler is not None:
            self.scheduler.step()

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if self.interval != "epoch" or self.scheduler is None:
            return
        if isinstance(self.scheduler, ReduceLROnPlateau):
            value = trainer.monitored_value(logs, trainer.monitor)
            if not math.isnan(value):
                self.scheduler.step(value)
        else:
            self.scheduler.step()

    @property
    def last_lr(self) -> list[float]:
        """The learning rate of each parameter group now."""
        assert self.scheduler is not None
        return [float(g["lr"]) for g in self.scheduler.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        return {} if self.scheduler is None else {"scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None and "scheduler" in state:
            self.scheduler.load_state_dict(state["scheduler"])
