"""Recording affinities during one training run, in a plain loop.

::

    recorder = AffinityRecorder(task_names, estimator="tag", every=10)
    for epoch in range(epochs):
        for x, y in loader:
            out = model(x)
            losses = {n: tasks[n].loss(out[n], y[n]) for n in tasks}
            recorder.record(losses, model.shared_parameters(), model=model,
                            loss_of_batch=lambda f: {n: tasks[n].loss(f(x)[n], y[n])
                                                     for n in tasks},
                            optimizer=optimizer)          # before the backward
            balancer.backward(losses, shared_params=model.shared_parameters())
            optimizer.step(); optimizer.zero_grad()
        recorder.end_epoch()
    affinity = recorder.result()          # an Affinity, [recipient, source]

The Trainer does the same through :class:`polytask.training.AffinityCallback`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..balancing.lookahead import LossOfBatch
from ..errors import PolytaskError
from .affinity import Affinity, mean_table
from .estimators import ESTIMATORS, gradient_similarity, lookahead_affinity


class AffinityRecorder:
    """Averages an affinity estimator over the steps of a training run.

    Args:
        tasks: the task names (the rows and columns of the table).
        estimator: ``"tag"`` (lookahead, :func:`~polytask.relations.lookahead_affinity`),
            ``"cosine"`` or ``"inner"`` (:func:`~polytask.relations.gradient_similarity`).
        every: record one step in ``every`` (TAG's cost is paid on those steps only).
        lr: the lookahead's learning rate (default: the optimizer's).
        groups: extra source groups for higher-order lookahead affinities
            (``Z_{S→j}``, TAG only), e.g. ``[("a", "b")]``.
        strategy: the Jacobian engine's strategy (``"loop"`` or ``"batched"``; default
            batched for TAG, loop for the gradient similarities).

    Call :meth:`record` once per training step, after the losses and before the
    backward (the estimators keep the graph), :meth:`end_epoch` after each epoch, and
    :meth:`result` at the end. The table is the mean over every recorded step; the
    history holds one mean per epoch.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        estimator: str = "tag",
        every: int = 10,
        lr: float | None = None,
        groups: Sequence[Sequence[str]] = (),
        strategy: str | None = None,
    ) -> None:
        if estimator not in ESTIMATORS:
            raise PolytaskError(f"unknown affinity estimator {estimator!r}; available: "
                                f"{', '.join(ESTIMATORS)}")
        if int(every) < 1:
            raise PolytaskError(f"every must be a positive number of steps, got {every}")
        self.tasks = [str(t) for t in tasks]
        if len(self.tasks) < 2 or len(set(self.tasks)) != len(self.tasks):
            raise PolytaskError(f"an affinity needs two or more distinct tasks, got {self.tasks}")
        self.estimator = estimator
        self.every = int(every)
        self.lr = lr
        self.groups = [tuple(g) for g in groups]
        for g in self.groups:
            unknown = [t for t in g if t not in self.tasks]
            if unknown or len(g) < 2:
                raise PolytaskError(f"higher-order source group {list(g)}: needs two or more "
                                    f"known tasks; unknown {unknown}; tasks {self.tasks}")
        if self.groups and estimator != "tag":
            raise PolytaskError("higher-order groups are a lookahead (estimator='tag') feature")
        self.strategy = strategy or ("batched" if estimator == "tag" else "loop")
        self.calls = 0
        self._steps: list[np.ndarray] = []
        self._group_steps: list[np.ndarray] = []
        self._epoch: list[np.ndarray] = []
        self.history: list[np.ndarray] = []
        self.used_lr: float | None = lr

    def due(self) -> bool:
        """Whether the next :meth:`record` call will compute (one call in ``every``)."""
        return self.calls % self.every == 0

    def record(
        self,
        losses: Mapping[str, Tensor],
        shared_params: Sequence[Tensor] | Any,
        model: nn.Module | None = None,
        loss_of_batch: LossOfBatch | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> np.ndarray | None:
        """Count one training step; on every ``every``-th, compute and store the table
        (returned, ``[recipient, source]``), else return None."""
        due = self.due()
        self.calls += 1
        if not due:
            return None
        missing = [t for t in self.tasks if t not in losses]
        unknown = [t for t in losses if t not in self.tasks]
        if missing or unknown:
            raise PolytaskError(f"affinity recorder: losses lack tasks {missing} / have unknown "
                                f"tasks {unknown}; recorder tasks {self.tasks}")
        ordered = {t: losses[t] for t in self.tasks}
        shared = list(shared_params)
        if self.estimator == "tag":
            if model is None or loss_of_batch is None:
                raise PolytaskError("the 'tag' estimator needs model=... and loss_of_batch=...")
            if self.lr is None and optimizer is None:
                raise PolytaskError("the 'tag' estimator needs lr=... or optimizer=...")
            sources = [(t,) for t in self.tasks] + self.groups
            _, z = lookahead_affinity(model, loss_of_batch, ordered, shared, self.lr,
                                      optimizer, sources, self.strategy)
            t = len(self.tasks)
            table = z[:t].T.copy()  # rows of z are sources: transpose to [recipient, source]
            if self.groups:
                self._group_steps.append(z[t:])
            if self.used_lr is None and optimizer is not None:
                self.used_lr = float(optimizer.param_groups[0]["lr"])
        else:
            table = gradient_similarity(ordered, shared, self.estimator, self.strategy)
        self._steps.append(table)
        self._epoch.append(table)
        return table

    def end_epoch(self) -> None:
        """Close an epoch: its mean table goes into the history."""
        if self._epoch:
            self.history.append(mean_table(self._epoch, len(self.tasks)))
        self._epoch = []

    def result(self, **info: Any) -> Affinity:
        """The :class:`Affinity` so far (``info`` is stored as provenance)."""
        if not self._steps:
            raise PolytaskError("no step was recorded: call record(...) during training")
        history = list(self.history)
        if self._epoch:
            history.append(mean_table(self._epoch, len(self.tasks)))
        groups: dict[tuple[str, ...], dict[str, float]] = {}
        if self._group_steps:
            mean = np.mean(np.stack(self._group_steps), axis=0)
            for g, row in zip(self.groups, mean):
                groups[g] = {t: float(v) for t, v in zip(self.tasks, row)}
        return Affinity(
            self.tasks, mean_table(self._steps, len(self.tasks)), self.estimator,
            len(self._steps), self.every, self.used_lr, history, groups, dict(info),
        )
