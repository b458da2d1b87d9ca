"""Training: the Trainer, callbacks and loggers, batches, seeds."""

from .affinity import AffinityCallback
from .batches import MultiTaskDataset, batch_loader, split_batch
from .callbacks import Callback, CSVLogger, TensorBoardLogger
from .optim import param_groups
from .plotting import plot_run
from .predict import predict
from .seeding import seed_everything
from .trainer import Trainer

__all__ = [
    "AffinityCallback",
    "CSVLogger",
    "Callback",
    "MultiTaskDataset",
    "TensorBoardLogger",
    "Trainer",
    "batch_loader",
    "param_groups",
    "plot_run",
    "predict",
    "seed_everything",
    "split_batch",
]
