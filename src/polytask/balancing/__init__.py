"""Balancing: loss weighting and gradient aggregation behind one Balancer contract.

>>> balancer = polytask.balancing.get("ew")
>>> result = balancer.backward(losses, shared_params=model.shared_parameters())
"""


from . import aggregation, engine, penalty, weighting  # importing them registers methods
from .accumulation import GradientAccumulator, whole_batch_losses
from .aggregation import (  # every method class, as polytask.balancing.<Class>
    IMTLG,
    MGDA,
    MGDAUB,
    RGW,
    AlignedMTL,
    CAGrad,
    ConFIG,
    DualProj,
    FairGrad,
    GradDrop,
    GradVac,
    MoCo,
    NashMTL,
    PCGrad,
    UPGrad,
)
from .base import BalanceContext, Balancer, BalanceResult, GradientAggregator, LossWeighting
from .penalty import Regularized
from .registry import available, get, method_class, register
from .weighting import (
    DBMTL,
    FAMO,
    IMTL,
    IMTLL,
    AutoLambda,
    DynamicWeightAverage,
    EqualWeighting,
    ExcessMTL,
    FixedWeighting,
    GeometricLossStrategy,
    GradNorm,
    LinearScalarization,
    RandomLossWeighting,
    SmoothTchebycheff,
    UncertaintyWeighting,
)

__all__ = [
    "AlignedMTL",
    "AutoLambda",
    "BalanceContext",
    "BalanceResult",
    "Balancer",
    "CAGrad",
    "ConFIG",
    "DBMTL",
    "DualProj",
    "DynamicWeightAverage",
    "EqualWeighting",
    "ExcessMTL",
    "FAMO",
    "FairGrad",
    "FixedWeighting",
    "GeometricLossStrategy",
    "GradDrop",
    "GradNorm",
    "GradVac",
    "GradientAccumulator",
    "GradientAggregator",
    "IMTL",
    "IMTLG",
    "IMTLL",
    "LinearScalarization",
    "LossWeighting",
    "MGDA",
    "MGDAUB",
    "MoCo",
    "NashMTL",
    "PCGrad",
    "RGW",
    "RandomLossWeighting",
    "Regularized",
    "SmoothTchebycheff",
    "UPGrad",
    "UncertaintyWeighting",
    "aggregation",
    "available",
    "engine",
    "get",
    "method_class",
    "penalty",
    "register",
    "weighting",
    "whole_batch_losses",
]
