"""Architectures: which parameters the tasks share."""

from .base import MultiTaskModel
from .hard_sharing import HardSharing
from .registry import Backbone, available, builder, get, register

__all__ = ["Backbone", "HardSharing", "MultiTaskModel", "available", "builder", "get", "register"]
