"""Trainer callbacks, and those built on them: loggers (CSV, TensorBoard), checkpoints
(:class:`ModelCheckpoint`), early stopping (:class:`EarlyStopping`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import write_atomic
from ..errors import PolytaskError

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Hooks the Trainer calls; override the ones you need.

    Order within a step: ``on_before_backward`` (losses in the graph), the balancer's
    backward, the precision plugin's unscale, ``on_before_optimizer_step`` (true
    gradients, before clipping), the optimizer step, ``on_optimizer_step`` (whether
    it stepped: fp16 skips steps with inf gradients), ``on_step_end`` (the record).
    A callback with state (early stopping's counter, a schedule) returns it from
    :meth:`state_dict`; checkpoints keep it under :attr:`state_key` and a resume
    gives it back through :meth:`load_state_dict`.
    """

    @property
    def state_key(self) -> str:
        """The key of this callback's state in a checkpoint (the class name; the
        Trainer numbers repeats)."""
        return type(self).__name__

    def state_dict(self) -> dict[str, Any]:
        """Plain data (tensors, numbers, strings, lists, dicts) to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first epoch (after a resume, too)."""

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        """Before each epoch."""

    def on_before_backward(
        self, trainer: Trainer, step: int, losses: dict[str, Any], batch: tuple[Any, Any, Any]
    ) -> None:
        """After the forward and the task losses, before the balancer's backward:
        ``losses`` are still in the graph, ``batch`` is ``(inputs, targets, masks)`` on
        the device (e.g. to measure task affinities on the same batch)."""

    def on_before_optimizer_step(self, trainer: Trainer, optimizer: Any) -> None:
        """After the balancer's backward and the loss scale's removal, before gradient
        clipping and the optimizer step: ``.grad`` holds the true update."""

    def on_optimizer_step(self, trainer: Trainer, optimizer: Any, stepped: bool) -> None:
        """Right after the optimizer step; ``stepped`` is False when the fp16 loss
        scaler skipped it (inf/NaN gradients)."""

    def on_step_end(self, trainer: Trainer, step: int, record: dict[str, float]) -> None:
        """After each optimizer step. ``record`` holds ``loss/<task>``, ``weight/<task>``
        and the balancer's extras, as floats."""

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        """After each epoch. ``logs`` maps ``"train"`` (and ``"val"``) to flat dicts of
        ``loss/<task>``, ``weight/<task>`` and ``<task>/<metric>``."""

    def on_fit_end(self, trainer: Trainer) -> None:
        """After the last epoch."""


class _CSVWriter:
    """Appends dict rows to a CSV file, widening the header when new keys appear."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        self.rows: list[dict[str, Any]] = []
        if path.exists():  # resuming: keep what is there
            with path.open() as f:
                reader = csv.DictReader(f)
                self.fields = list(reader.fieldnames or [])
                self.rows = list(reader)

    def add(self, row: dict[str, Any]) -> None:
        for key in row:
            if key not in self.fields:
                self.fields.append(key)
        self.rows.append(row)

    def truncate(self, keep: Any) -> None:
        self.rows = [r for r in self.rows if keep(r)]

    def flush(self) -> None:
        """Rewrite the file atomically (a crash never leaves half a CSV)."""

        def write(f: Any) -> None:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(self.rows)

        write_atomic(self.path, write, binary=False)


class CSVLogger(Callback):
    """Writes ``steps.csv`` (every ``every`` steps: step, epoch, loss/<task>,
    weight/<task>, extras) and ``epochs.csv`` (epoch, split, losses, weights,
    metrics) in ``log_dir``; flushed at each epoch end."""

    def __init__(self, log_dir: str | Path, every: int = 1) -> None:
        self.log_dir = Path(log_dir)
        self.every = every
        self._steps: _CSVWriter | None = None
        self._epochs: _CSVWriter | None = None
        self._epoch = 0

    def on_fit_start(self, trainer: Trainer) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._steps = _CSVWriter(self.log_dir / "steps.csv")
        self._epochs = _CSVWriter(self.log_dir / "epochs.csv")
        # after a resume, drop rows written after the checkpoint
        done = trainer.epochs_done
        self._steps.truncate(lambda r: int(float(r["epoch"])) < done)
        self._epochs.truncate(lambda r: int(float(r["epoch"])) < done)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._epoch = epoch

    def on_step_end(self, trainer: Trainer, step: int, record: dict[str, float]) -> None:
        if step % self.every == 0 and self._steps is not None:
            self._steps.add({"step": step, "epoch": self._epoch, **record})

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        assert self._steps is not None and self._epochs is not None
        for split, values in logs.items():
            self._epochs.add({"epoch": epoch, "split": split, **values})
        self._steps.flush()
        self._epochs.flush()


class TensorBoardLogger(Callback):
    """Writes the epoch logs to TensorBoard (needs the ``tensorboard`` package)."""

    def __init__(self, log_dir: str | Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # raises if not installed

        self.writer = SummaryWriter(str(log_dir))

    def on_step_end(self, trainer: Trainer, step: int, record: dict[str, float]) -> None:
        for key, value in record.items():
            self.writer.add_scalar(f"step/{key}", value, step)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        for split, values in logs.items():
            for key, value in values.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{key}", value, epoch)
        self.writer.flush()

    def on_fit_end(self, trainer: Trainer) -> None:
        self.writer.close()


class ModelCheckpoint(Callback):
    """Writes ``last.pt`` after every epoch and ``best.pt`` when the monitored value
    improved (``Trainer.monitor``), in ``log_dir``. The Trainer adds one, last among
    its callbacks (so every other callback's state is saved as of the epoch's end),
    when it has a ``log_dir``; resuming reads ``last.pt`` (``fit(resume=True)``)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        if trainer.improved:
            trainer.save_checkpoint(self.log_dir / "best.pt")
        trainer.save_checkpoint(self.log_dir / "last.pt")


class EarlyStopping(Callback):
    """Stops ``fit`` when the monitored value has not improved for ``patience`` epochs.

    Args:
        monitor: ``"loss"`` (the sum of the non-auxiliary tasks' losses) or
            ``"task/metric"``, read as the Trainer reads its own ``monitor`` (on the
            validation logs when there are any, else the training logs); None: the
            Trainer's ``monitor``.
        patience: epochs without improvement before stopping.
        min_delta: the least change that counts as an improvement.
        mode: "min" or "max"; None: from the monitor (lower loss is better; a
            metric's direction comes from its task).

    An epoch whose value is NaN counts as no improvement. The state (best value,
    epochs waited, the epoch it stopped at) is checkpointed, so a resumed run stops at
    the epoch an uninterrupted one would (``trainer.stopped_epoch``).
    """

    def __init__(
        self,
        monitor: str | None = None,
        patience: int = 3,
        min_delta: float = 0.0,
        mode: str | None = None,
    ) -> None:
        if not isinstance(patience, int) or isinstance(patience, bool) or patience < 1:
            raise PolytaskError(f"EarlyStopping: patience must be a positive int, got {patience!r}")
        if not (isinstance(min_delta, (int, float)) and min_delta >= 0):
            raise PolytaskError(f"EarlyStopping: min_delta must be >= 0, got {min_delta!r}")
        if mode not in (None, "min", "max"):
            raise PolytaskError(f"EarlyStopping: mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.patience = patience
        self.min_delta = float(min_delta)
        self.mode = mode
        self.best: float | None = None
        self.wait = 0
        self.stopped_epoch: int | None = None

    def on_fit_start(self, trainer: Trainer) -> None:
        monitor = self.monitor or trainer.monitor
        higher = trainer._monitor_direction(monitor)  # checks the name, too
        if self.mode is None:
            self.mode = "max" if higher else "min"

    def on_epoch_end(self, trainer: Trainer, epoch: int, logs: dict[str, Any]) -> None:
        value = trainer.monitored_value(logs, self.monitor or trainer.monitor)
        if not math.isnan(value) and (
            self.best is None
            or (value > self.best + self.min_delta if self.mode == "max"
                else value < self.best - self.min_delta)
        ):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_epoch": self.stopped_epoch,
                "mode": self.mode}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.wait = int(state.get("wait", 0))
        self.stopped_epoch = state.get("stopped_epoch")
        self.mode = state.get("mode", self.mode)


def tensorboard_available() -> bool:
    """Whether TensorBoard logging can be used."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
