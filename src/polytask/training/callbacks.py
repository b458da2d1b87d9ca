"""Trainer callbacks, and the loggers built on them (CSV, TensorBoard)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..atomic import write_atomic

if TYPE_CHECKING:
    from .trainer import Trainer


class Callback:
    """Hooks the Trainer calls; override the ones you need."""

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


def tensorboard_available() -> bool:
    """Whether TensorBoard logging can be used."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
