"""Tasks from different datasets: sampling schedules, loaders, stems, distillation.

``MultiDatasetLoader({"digit": mnist, "clothing": fashion}, batch_size=128,
schedule="temperature:T=2")`` yields batches the :class:`~polytask.training.Trainer`
(and a plain loop) already understands; :class:`PerDatasetLoader` evaluates each task
on its own dataset; :class:`MultiDatasetModel` puts per-dataset stems in front of a
shared model; :class:`Distillation` trains a student on teacher-annealed targets (BAM).
"""

from . import schedules
from .distill import Distillation, SoftMulticlass, student_tasks, teacher_outputs
from .loader import MODES, LoaderCallback, MultiDatasetLoader, PerDatasetLoader
from .model import MultiDatasetModel
from .schedules import Schedule

__all__ = [
    "MODES",
    "Distillation",
    "LoaderCallback",
    "MultiDatasetLoader",
    "MultiDatasetModel",
    "PerDatasetLoader",
    "Schedule",
    "SoftMulticlass",
    "schedules",
    "student_tasks",
    "teacher_outputs",
]
