"""Gradient aggregation methods: per-task gradients combined into one update.

Importing this package registers every method (``polytask.balancing.get(name)``).
The shared solvers live in :mod:`._solvers`; see docs/aggregation.md.
"""

from ._solvers import SolverError, SolverWarning
from .aligned import AlignedMTL
from .cagrad import CAGrad
from .config import ConFIG
from .fair import FairGrad, NashMTL
from .graddrop import GradDrop
from .imtl import IMTLG
from .mgda import MGDA, MGDAUB
from .moco import MoCo
from .projection import GradVac, PCGrad
from .rgw import RGW
from .upgrad import DualProj, UPGrad

__all__ = [
    "MGDA",
    "MGDAUB",
    "RGW",
    "AlignedMTL",
    "CAGrad",
    "ConFIG",
    "DualProj",
    "FairGrad",
    "GradDrop",
    "GradVac",
    "IMTLG",
    "MoCo",
    "NashMTL",
    "PCGrad",
    "SolverError",
    "SolverWarning",
    "UPGrad",
]
