"""Balancing: loss weighting and gradient aggregation behind one Balancer contract.

>>> balancer = polytask.balancing.get("ew")
>>> result = balancer.backward(losses, shared_params=model.shared_parameters())
"""


from . import aggregation, engine, weighting  # importing them registers their methods
from .base import BalanceContext, Balancer, BalanceResult, GradientAggregator, LossWeighting
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
    "aggregation",
    "available",
    "engine",
    "get",
    "method_class",
    "register",
    "weighting",
]
