"""The affinity recorder as a Trainer callback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..relations import Affinity, AffinityRecorder
from .callbacks import Callback

if TYPE_CHECKING:
    from .trainer import Trainer


class AffinityCallback(Callback):
    """Records task affinities during :meth:`Trainer.fit` with an
    :class:`~polytask.relations.AffinityRecorder` (same arguments).

    On every ``every``-th step, before the balancer's backward, the estimator runs on
    that step's batch and losses: ``"tag"`` re-evaluates every task's loss after a
    virtual step of the Trainer's optimizer along each task's shared gradient (the
    model, its buffers and the optimizer are left as they are); ``"cosine"`` and
    ``"inner"`` use the Gramian of the task gradients. The table goes to
    :attr:`affinity` at the end of training, and to ``affinity.json`` / ``.csv`` in the
    Trainer's ``log_dir`` when it has one (or in ``save_dir``).

    Extra cost: the estimator's, on one step in ``every`` (see
    :func:`~polytask.relations.lookahead_affinity`); a resumed run records only the
    steps it trains.
    """

    def __init__(
        self,
        estimator: str = "tag",
        every: int = 10,
        lr: float | None = None,
        groups: Sequence[Sequence[str]] = (),
        strategy: str | None = None,
        save_dir: str | Path | None = None,
    ) -> None:
        self.options = {"estimator": estimator, "every": every, "lr": lr,
                        "groups": groups, "strategy": strategy}
        AffinityRecorder(["_a", "_b"], estimator, every, lr, (), strategy)  # check early
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.recorder: AffinityRecorder | None = None
        self.affinity: Affinity | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.recorder = AffinityRecorder(trainer.task_names, **self.options)

    def on_before_backward(
        self, trainer: Trainer, step: int, losses: dict[str, Any], batch: tuple[Any, Any, Any]
    ) -> None:
        assert self.recorder is not None
        inputs, targets, masks = batch
        tasks = trainer.tasks

        def loss_of_batch(forward):  # noqa: ANN001, ANN202
            out = forward(inputs)
            return {n: t.loss(out[n], targets[n], masks.get(n)) for n, t in tasks.items()}

        self.recorder.record(losses, trainer.shared_params, model=trainer.model,
                             loss_of_batch=loss_of_batch, optimizer=trainer.optimizer)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        assert self.recorder is not None
        self.recorder.end_epoch()

    def on_fit_end(self, trainer: Trainer) -> None:
        assert self.recorder is not None
        self.affinity = self.recorder.result(optimizer=type(trainer.optimizer).__name__)
        where = self.save_dir or trainer.log_dir
        if where is not None:
            self.affinity.save(Path(where) / "affinity.json")
            self.affinity.save(Path(where) / "affinity.csv")
