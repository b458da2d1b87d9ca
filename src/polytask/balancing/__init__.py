"""Balancing: loss weighting and gradient aggregation behind one Balancer contract.

>>> balancer = polytask.balancing.get("ew")
>>> result = balancer.backward(losses, shared_params=model.shared_parameters())
"""


from . import aggregation, engine, penalty, weighting  # importing them registers methods
from .base import BalanceContext, Balancer, BalanceResult, GradientAggregator, LossWeighting
from .penalty import Regularized
from .registry import available, get, method_class, register
from .weighting import EqualWeighting, FixedWeighting

__all__ = [
    "BalanceContext",
    "BalanceResult",
    "Balancer",
    "EqualWeighting",
    "FixedWeighting",
    "GradientAggregator",
    "LossWeighting",
    "Regularized",
    "aggregation",
    "available",
    "engine",
    "get",
    "method_class",
    "penalty",
    "register",
    "weighting",
]
