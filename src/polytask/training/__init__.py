"""Training: the Trainer, callbacks and loggers, batches, seeds."""

from .batches import MultiTaskDataset, batch_loader, split_batch
from .callbacks import Callback, CSVLogger, TensorBoardLogger
from .seeding import seed_everything
from .trainer import Trainer

__all__ = [
    "CSVLogger",
    "Callback",
    "MultiTaskDataset",
    "TensorBoardLogger",
    "Trainer",
    "batch_loader",
    "seed_everything",
    "split_batch",
]
