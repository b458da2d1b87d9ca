"""Training: the Trainer, callbacks (loggers, checkpoints, early stopping, LR
schedules), precision, several processes (torchrun), batches, seeds."""

from .affinity import AffinityCallback
from .batches import MultiTaskDataset, batch_loader, split_batch
from .callbacks import Callback, CSVLogger, EarlyStopping, ModelCheckpoint, TensorBoardLogger
from .distributed import Distributed
from .optim import param_groups
from .plotting import plot_run
from .precision import Precision
from .predict import predict
from .schedulers import LRScheduling
from .seeding import seed_everything
from .trainer import Trainer

__all__ = [
    "AffinityCallback",
    "CSVLogger",
    "Callback",
    "Distributed",
    "EarlyStopping",
    "LRScheduling",
    "ModelCheckpoint",
    "MultiTaskDataset",
    "Precision",
    "TensorBoardLogger",
    "Trainer",
    "batch_loader",
    "param_groups",
    "plot_run",
    "predict",
    "seed_everything",
    "split_batch",
]
