"""Loss weighting methods: weights from the losses, one backward of the weighted sum.

Importing this package registers every method: ``ew``, ``weighted``, ``uw``,
``gradnorm``, ``dwa``, ``rlw``, ``gls``, ``imtl-l``, ``imtl``, ``famo``, ``db-mtl``,
``stch``, ``excess-mtl``, ``auto-lambda``, ``scalarization``.
"""

from .autolambda import AutoLambda, val_loss_from_loader
from .basic import EqualWeighting, FixedWeighting
from .dbmtl import DBMTL
from .dwa import DynamicWeightAverage, dwa_weights
from .excess import ExcessMTL
from .famo import FAMO
from .gls import GeometricLossStrategy
from .gradnorm import GradNorm
from .imtl import IMTL, IMTLL, imtl_g_weights
from .rlw import RandomLossWeighting
from .scalarization import LinearScalarization, random_simplex, simplex_grid, sweep
from .stch import SmoothTchebycheff, stch_weights
from .uncertainty import UncertaintyWeighting

__all__ = [
    "DBMTL",
    "FAMO",
    "IMTL",
    "IMTLL",
    "AutoLambda",
    "DynamicWeightAverage",
    "EqualWeighting",
    "ExcessMTL",
    "FixedWeighting",
    "GeometricLossStrategy",
    "GradNorm",
    "LinearScalarization",
    "RandomLossWeighting",
    "SmoothTchebycheff",
    "UncertaintyWeighting",
    "dwa_weights",
    "imtl_g_weights",
    "random_simplex",
    "simplex_grid",
    "stch_weights",
    "sweep",
    "val_loss_from_loader",
]
